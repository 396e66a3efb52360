"""Say a text: input = its characters, target = the codec's code frames of its speech.

Without task.path the speech is the synthetic voice (each letter a voiced segment of its own, a
space a pause): difficulty = number of symbols; training never sees the held-out tenth of all
strings, which the evaluation sets are drawn from. With task.path = a folder from `th1nker speech prepare` (espeak-ng),
difficulty selects the split as in text_qa: 0 = train, 1 = held out (set task.train: [0, 0],
task.eval: [1]). Targets are (B, T, codebooks) codes, IGNORE past each utterance's end.

An utterance counts as right when its length is within one frame of the target's and the first
codebook, which carries the coarse spectrum, is right on at least 90% of the target's frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from th1nker.errors import DataError
from th1nker.omni.audio import MelParams
from th1nker.omni.codec import RVQCodec
from th1nker.omni.speech_data import HELD_OUT, TRAIN, SpeechFolder, mels_of, random_text, synthetic_codec
from th1nker.omni.voice import SYMBOLS, FormantVoice
from th1nker.tasks import register_task
from th1nker.tasks.base import IGNORE, Batch, Task, TaskSpec
from th1nker.tasks.text_qa import CharVocab

FRAMES_RIGHT = 0.9  # share of target frames whose first code must be right
FRAME_SECONDS = MelParams().hop / MelParams().sample_rate


@dataclass(frozen=True)
class SpeechSpec(TaskSpec):
    """A TaskSpec for speech: the frozen codec behind the targets and the most frames per input symbol."""

    codec: RVQCodec | None = None
    frames_per_symbol: float = 10.0


@register_task("speak")
class Speak(Task):
    """Say the input text as codec frames (the synthetic voice, or a prepared speech folder)."""

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        self.folder = SpeechFolder(config.path) if config.path else None
        if self.folder is None:
            self.voice = FormantVoice()
            self.codec = synthetic_codec()
            self.vocab = CharVocab(SYMBOLS)
            per_symbol = max(len(s) for s in self.voice.segments.values()) / self.voice.params.hop + 1
            if min(*config.train, *config.eval) < 1:
                raise DataError("speak: difficulty is the number of symbols; set task.train and task.eval to 1 or more")
        else:
            self.codec = self.folder.codec
            self.vocab = CharVocab("".join(text for text, *_ in self.folder.items))
            per_symbol = 1.25 * max(len(mel) / len(text) for text, mel, _ in self.folder.items)
            if set(config.eval) - {TRAIN, HELD_OUT}:
                raise DataError(f"task.eval {list(config.eval)}: with task.path, speak difficulties select "
                                "the split (0 = train, 1 = held out); set task.eval: [1]")
        c = self.codec.config
        self.spec = SpeechSpec(vocab=len(self.vocab), classes=c.codebook_size, target="codes",
                               codec=self.codec, frames_per_symbol=per_symbol)

    def sample_difficulty(self, generator: torch.Generator) -> int:
        return TRAIN if self.folder is not None else super().sample_difficulty(generator)

    def batch(self, n: int, difficulty: int, generator: torch.Generator, split: int = TRAIN) -> Batch:
        if self.folder is None:
            texts = [random_text(difficulty, split, generator) for _ in range(n)]
            return self._pack(texts, self._codes(texts), difficulty)
        pool = [(t, mel) for t, mel, s in self.folder.items if s == difficulty]
        if not pool:
            raise DataError(f"speak: difficulty {difficulty} is not a split of {self.folder.path}; use 0 or 1")
        picks = torch.randint(0, len(pool), (n,), generator=generator).tolist()
        return self._pack([pool[i][0] for i in picks], [self.codec.encode(pool[i][1]) for i in picks], difficulty)

    def eval_batch(self, difficulty: int, n: int | None = None) -> Batch:
        """The fixed evaluation set: held-out strings (synthetic voice) or the split `difficulty`."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + difficulty + 7)
        return self.batch(n or self.config.eval_examples, difficulty, g, split=HELD_OUT)

    def _codes(self, texts: list[str]) -> list[Tensor]:
        """The code frames of the synthetic voice saying each text."""
        mels = mels_of([self.voice.say(t) for t in texts])
        return list(self.codec.encode(torch.cat(mels)).split([len(m) for m in mels]))

    def _pack(self, texts: list[str], codes: list[Tensor | None], difficulty: int | None) -> Batch:
        s = max(len(t) for t in texts)
        frames = max([1] + [len(c) for c in codes if c is not None])
        x = torch.full((len(texts), s), CharVocab.PAD)
        mask = torch.zeros(len(texts), s, dtype=torch.bool)
        y = torch.full((len(texts), frames, self.codec.config.codebooks), IGNORE)
        for i, (text, c) in enumerate(zip(texts, codes)):
            x[i, :len(text)], mask[i, :len(text)] = torch.tensor(self.vocab.encode(text)), True
            if c is not None:
                y[i, :len(c)] = c
        return Batch({"text": x}, y, masks={"text": mask}, difficulty=difficulty)

    def score(self, prediction: Tensor, batch: Batch) -> Tensor:
        target = batch.target
        wanted = (target[..., 0] != IGNORE).sum(1)
        said = (prediction[..., 0] != IGNORE).sum(1)
        t = min(target.shape[1], prediction.shape[1])
        hits = ((prediction[:, :t, 0] == target[:, :t, 0]) & (target[:, :t, 0] != IGNORE)).sum(1)
        return ((said - wanted).abs() <= 1) & (hits >= FRAMES_RIGHT * wanted)

    def encode(self, text: str) -> Batch:
        """The text to say; its target is the synthetic voice's, or the folder's when it holds the text."""
        text = text.strip().lower()
        if not text:
            raise DataError("--input '': speak takes a text to say, e.g. --input 'hello'")
        if self.folder is None:
            self.voice.check(text)
            return self._pack([text], self._codes([text]), len(text))
        known = {t: mel for t, mel, _ in self.folder.items}
        unknown = sorted(set(text) - set(self.vocab.chars))
        if unknown:
            raise DataError(f"--input {text!r}: {''.join(unknown)} never occurs in {self.folder.path}")
        return self._pack([text], [self.codec.encode(known[text]) if text in known else None], None)

    def decode(self, prediction: Tensor) -> str:
        frames = int((prediction[..., 0] != IGNORE).sum())
        return f"{frames} frames ({frames * FRAME_SECONDS:.2f} s of speech)"
