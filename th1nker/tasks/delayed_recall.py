"""Delayed recall: facts arrive one per step, then a question about one of them. Difficulty = facts.

The text input is `k1 v1 k2 v2 ... kF vF ? kq` with F distinct keys. Read with `read_text` and
`stream: 2`, fact i is visible at step i only and the question at step F, so a fact seen at the first
step is needed F steps later; the target is kq's value (a class). A one-slot latent cannot carry F
facts; the medium-term store (read_latent) can. Text form: keys a..p, values 0..f: `a3 c7 b1 ?c` -> 7.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from th1nker.errors import DataError
from th1nker.tasks import register_task
from th1nker.tasks.base import Batch, Task, TaskSpec

KEYS, VALUES = "abcdefghijklmnop", "0123456789abcdef"
QUERY = len(KEYS) + len(VALUES)  # the token that starts the question
TEXT = re.compile(r"^((?:[a-p][0-9a-f]\s+)+)\?\s*([a-p])$")
FORMAT = "expected facts `key value` then `?key`, keys a..p and values 0..f, e.g. 'a3 c7 b1 ?c'"


@register_task("delayed_recall")
class DelayedRecall(Task):
    """Recall the value of a key seen many steps earlier."""

    spec = TaskSpec(vocab=QUERY + 1, classes=len(VALUES), target="class")

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        if not 1 <= difficulty <= len(KEYS):
            raise DataError(f"delayed_recall: {difficulty} facts asked for; set task.train and task.eval "
                            f"within 1..{len(KEYS)} (one distinct key each)")
        keys = torch.rand(n, len(KEYS), generator=generator).argsort(dim=1)[:, :difficulty]
        values = torch.randint(0, len(VALUES), (n, difficulty), generator=generator)
        asked = torch.randint(0, difficulty, (n,), generator=generator)
        return self._batch(keys, values, asked)

    @staticmethod
    def _batch(keys: Tensor, values: Tensor, asked: Tensor) -> Batch:
        rows = torch.arange(keys.shape[0])
        facts = torch.stack([keys, values + len(KEYS)], dim=2).flatten(1)
        question = torch.stack([torch.full_like(asked, QUERY), keys[rows, asked]], dim=1)
        return Batch({"text": torch.cat([facts, question], dim=1)}, values[rows, asked], difficulty=keys.shape[1])

    def encode(self, text: str) -> Batch:
        match = TEXT.match(text.strip())
        if match is None:
            raise DataError(f"--input {text!r}: {FORMAT}")
        facts = match.group(1).split()
        keys = [KEYS.index(f[0]) for f in facts]
        if len(set(keys)) != len(keys) or KEYS.index(match.group(2)) not in keys:
            raise DataError(f"--input {text!r}: keys must be distinct and the question must ask one of them")
        values = [VALUES.index(f[1]) for f in facts]
        return self._batch(torch.tensor([keys]), torch.tensor([values]), torch.tensor([keys.index(KEYS.index(match.group(2)))]))

    def decode(self, prediction: Tensor) -> str:
        return VALUES[int(prediction)]
