"""Questions about your own images and sounds, listed in a JSON-lines file.

task.path names the .jsonl file; each line is one example, e.g.
{"image": "photos/cat.png", "question": "what animal is it?", "answer": "cat"} or with "audio": "a.wav"
(or both), paths relative to the .jsonl file's folder and inside it (TH1NKER_ALLOW_OUTSIDE_PATHS=1 allows
others); every line names the same media. Images are resized to task.image_size; wav files are mixed
down to mono and resampled to 16 kHz. Every file is read up front, so a broken one stops the run at
once, by name. The answers seen become the classes.
Difficulty selects the split, fixed by the seed: 0 = train (90%), 1 = held-out (10%).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from th1nker.datapaths import inside
from th1nker.errors import DataError
from th1nker.tasks import register_task
from th1nker.tasks.base import Batch
from th1nker.tasks.media import MediaQA

FORMAT = 'one JSON object a line: {"image": "a.png", "question": "...", "answer": "..."} (or "audio": "a.wav")'
TRAIN, HELD_OUT = 0, 1


def read_jsonl(path: str | None) -> tuple[Path, list[dict]]:
    """The file and its examples, each checked to have a question, an answer and the same media, with the
    media paths resolved inside the file's folder."""
    if path is None:
        raise DataError(f"media_qa needs task.path: a .jsonl file, {FORMAT}")
    file = Path(path).expanduser().resolve()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{file}: cannot read the media_qa file ({e}); task.path needs {FORMAT}") from None
    rows, media = [], None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{file}:{number}: not valid JSON ({e}); expected {FORMAT}") from None
        keys = set(row) if isinstance(row, dict) else set()
        media = media if media is not None else keys & {"image", "audio"}
        if not ({"question", "answer"} <= keys and media and keys - {"question", "answer"} == media):
            raise DataError(f"{file}:{number}: expected a question, an answer and the media of line 1 "
                            f"({', '.join(sorted(media)) or 'image and/or audio'}); {FORMAT}")
        row = {k: str(v) for k, v in row.items()}
        rows.append({**row, **{m: inside(file.parent, row[m], f"{file}:{number}") for m in media}})
    if not rows:
        raise DataError(f"{file}: no examples; {FORMAT}")
    return file, rows


@register_task("media_qa")
class MediaFileQA(MediaQA):
    """Questions about images and/or wav files listed in a JSON-lines file; answers are classes."""

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        self.path, rows = read_jsonl(config.path)
        self.modalities = tuple(m for m in ("image", "audio") if m in rows[0])
        self.setup(sorted({r["answer"] for r in rows}), chars="".join(r["question"] for r in rows))
        self.examples = [self.load(r["question"], r["answer"], r.get("image"), r.get("audio")) for r in rows]
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
        held = max(1, len(order) // 10) if len(order) > 1 else 0
        self.splits = {TRAIN: order[held:], HELD_OUT: order[:held]}
        if set(config.eval) - set(self.splits):
            raise DataError(f"task.eval {list(config.eval)}: media_qa difficulties select the split "
                            "(0 = train, 1 = held-out); set task.eval: [0, 1]")

    def sample_difficulty(self, generator: torch.Generator) -> int:
        return TRAIN

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        split = self.splits.get(difficulty)
        if not split:
            raise DataError(f"{self.path}: split {difficulty} is empty or unknown; use 0 = train, 1 = held-out "
                            "(a held-out split needs at least 2 examples)")
        # whole permutations of the split, so n >= len(split) covers every example evenly
        idx = torch.cat([torch.randperm(len(split), generator=generator) for _ in range(math.ceil(n / len(split)))])
        return self.pack([self.examples[split[i]] for i in idx[:n].tolist()], difficulty)
