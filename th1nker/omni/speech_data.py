"""Speech to train the Talker on: the synthetic voice, or a folder of utterances made with espeak-ng.

A speech folder (`prepare`, i.e. `th1nker speech prepare`) holds wav/NNNNN.wav, utterances.jsonl
(one {"text", "wav", "split"} per line; split 1 = held out), codec.safetensors (the codec trained on
the split-0 frames) and manifest.json (where the speech came from and the codec's report).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import tempfile
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from th1nker.datapaths import inside
from th1nker.errors import DataError
from th1nker.io import atomic_write_json, atomic_write_text

from .audio import LogMel, load_wav, save_wav
from .codec import CodecConfig, RVQCodec
from .voice import SYMBOLS, FormantVoice

FLOOR = 1e-5  # log-mel floor of the speech path: about 100 dB below a full-scale tone
TRAIN, HELD_OUT = 0, 1
SYNTHETIC_CODEC = Path(__file__).parent / "data" / "synthetic_codec.safetensors"


@lru_cache(maxsize=1)
def speech_logmel() -> LogMel:
    return LogMel(normalise=False, floor=FLOOR)


def mels_of(waves: list[Tensor]) -> list[Tensor]:
    """Unnormalised log-mel frames (T_i, n_mels) of each waveform, computed as one batch.

    Each wave is read as followed by silence, so its frames never depend on what it is batched with.
    """
    logmel = speech_logmel()
    lengths = [len(w) for w in waves]
    batch = torch.zeros(len(waves), max(lengths) + logmel.params.n_fft // 2)
    for i, w in enumerate(waves):
        batch[i, :len(w)] = w
    mel, _ = logmel(batch)
    return [mel[i, : n // logmel.hop + 1] for i, n in enumerate(lengths)]


def mel_of(wave: Tensor) -> Tensor:
    """Unnormalised log-mel frames (T, n_mels) of one waveform."""
    return mels_of([wave])[0]


def split_of(text: str) -> int:
    """HELD_OUT for a fixed tenth of all texts (by hash), else TRAIN: the same in every process."""
    return HELD_OUT if zlib.crc32(text.encode()) % 10 == 0 else TRAIN


def random_text(length: int, split: int, g: torch.Generator) -> str:
    """A random string of `length` symbols (letters and spaces) from the given split."""
    while True:
        text = "".join(SYMBOLS[i] for i in torch.randint(0, len(SYMBOLS), (length,), generator=g).tolist())
        if split_of(text) == split:
            return text


def train_synthetic_codec(seed: int = 0, utterances: int = 300) -> RVQCodec:
    """A codec (2 x 128) trained on the synthetic voice saying training-split strings of 2-8 symbols."""
    voice, g = FormantVoice(), torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (utterances,), generator=g).tolist()
    codec = RVQCodec()
    codec.fit(torch.cat(mels_of([voice.say(random_text(n, TRAIN, g)) for n in lengths])), seed=seed)
    return codec


@lru_cache(maxsize=1)
def synthetic_codec() -> RVQCodec:
    """The shipped codec of the synthetic voice (`python -m th1nker.omni.speech_data` rewrites it)."""
    return RVQCodec.load(SYNTHETIC_CODEC)


class SpeechFolder:
    """The utterances of a prepared folder, as (text, log-mel frames, split), with its codec."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        listing = self.path / "utterances.jsonl"
        if not listing.is_file():
            raise DataError(f"{self.path}: no utterances.jsonl; make the folder with "
                            f"`th1nker speech prepare --out {path}`")
        self.codec = RVQCodec.load(self.path / "codec.safetensors")
        self.items: list[tuple[str, Tensor, int]] = []
        for n, line in enumerate(listing.read_text().splitlines(), 1):
            try:
                row = json.loads(line)
                wav = inside(self.path, row["wav"], f"{listing}:{n}")
                self.items.append((row["text"], mel_of(load_wav(wav)), int(row["split"])))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{listing}:{n}: expected {{\"text\", \"wav\", \"split\"}} ({e})") from None
        if not any(s == TRAIN for *_, s in self.items) or not any(s == HELD_OUT for *_, s in self.items):
            raise DataError(f"{listing}: needs utterances in both splits; prepare more of them (--count)")


def espeak() -> str | None:
    """The espeak-ng executable, or None when it is not installed."""
    return shutil.which("espeak-ng")


def espeak_say(text: str, voice: str = "en", speed: int = 150) -> Tensor:
    """espeak-ng saying `text`, as a 16 kHz waveform."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "say.wav"
        result = subprocess.run([espeak() or "espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise DataError(f"espeak-ng failed on {text!r}: {result.stderr.strip()}")
        return load_wav(wav)


def phrases(count: int, seed: int, max_words: int = 3) -> list[str]:
    """`count` distinct short lowercase phrases (1..max_words words) cut from the bundled corpus."""
    from .corpus import CORPUS_PATH

    words = re.findall(r"[a-z]+", CORPUS_PATH.read_text().lower())
    r, out = random.Random(seed), {}
    for _ in range(100 * count):
        if len(out) == count:
            break
        i = r.randrange(len(words))
        out.setdefault(" ".join(words[i:i + r.randint(1, max_words)]), None)
    return list(out)


def prepare(out: Path, count: int, seed: int = 0, codec: CodecConfig | None = None, use_espeak: bool = True,
            echo: Callable[[str], None] = print) -> dict:
    """Write a speech folder of `count` utterances: espeak-ng if installed (and wanted), else the
    synthetic voice. Trains the codec on the training split and reports it on the held-out split."""
    out = Path(out)
    binary = espeak() if use_espeak else None
    if binary:
        source, say = f"espeak-ng ({binary})", espeak_say
    else:
        echo("espeak-ng is not installed (apt-get install espeak-ng): using the synthetic formant voice")
        source, say = "synthetic formant voice", FormantVoice().say
    (out / "wav").mkdir(parents=True, exist_ok=True)
    rows, frames = [], {TRAIN: [], HELD_OUT: []}
    for i, text in enumerate(phrases(count, seed)):
        wave = say(text)
        name = f"wav/{i:05d}.wav"
        save_wav(out / name, wave)
        split = split_of(text)
        rows.append({"text": text, "wav": name, "split": split})
        frames[split].append(mel_of(load_wav(out / name)))  # what the task will read back
    if not frames[TRAIN] or not frames[HELD_OUT]:
        raise DataError(f"{count} utterances leave a split empty; prepare more (--count 50 or more)")
    atomic_write_text(out / "utterances.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    model = RVQCodec(codec)
    train = torch.cat(frames[TRAIN])
    model.fit(train, seed=seed)
    model.save(out / "codec.safetensors")
    report = model.report(torch.cat(frames[HELD_OUT]))
    manifest = {"source": source, "utterances": len(rows), "held_out": sum(r["split"] for r in rows),
                "train_frames": len(train), "codec": model.config.model_dump(), "codec_held_out": report}
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


if __name__ == "__main__":
    trained = train_synthetic_codec()
    trained.save(SYNTHETIC_CODEC)
    g = torch.Generator().manual_seed(1)
    held_out = [FormantVoice().say(random_text(n, HELD_OUT, g)) for n in range(2, 9) for _ in range(20)]
    print(f"wrote {SYNTHETIC_CODEC}; held out: {trained.report(torch.cat(mels_of(held_out)))}")
