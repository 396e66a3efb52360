"""Addition of two n-digit numbers, digit pairs in, sum digits out. Difficulty = n."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor

from th1nker.errors import DataError
from th1nker.tasks import register_task
from th1nker.tasks.base import Batch, Task, TaskSpec

_SUM = re.compile(r"\s*([0-9]+)\s*\+\s*([0-9]+)\s*")


def _sum_digits(a: Tensor, b: Tensor) -> Tensor:
    """Digits of a + b, least significant first; a, b: (B, n+1) digits, last column 0."""
    out, carry = torch.empty_like(a), torch.zeros_like(a[:, 0])
    for i in range(a.shape[1]):
        t = a[:, i] + b[:, i] + carry
        out[:, i], carry = t % 10, t // 10
    return out


@register_task("addition")
class Addition(Task):
    """n+1 positions, least significant first: input a_i*10 + b_i (last = 0), target digit i of a+b.

    Solved by carrying one bit along the sequence, like prefix parity with a richer local rule.
    """

    spec = TaskSpec(vocab=100, classes=10)

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        if difficulty < 1:
            raise DataError(f"addition: difficulty (number of digits) must be >= 1, got {difficulty}; "
                            "set task.train and task.eval to digit counts >= 1")
        a = F.pad(torch.randint(0, 10, (n, difficulty), generator=generator), (0, 1))
        b = F.pad(torch.randint(0, 10, (n, difficulty), generator=generator), (0, 1))
        return Batch({"text": a * 10 + b}, _sum_digits(a, b), difficulty=difficulty)

    def encode(self, text: str) -> Batch:
        m = _SUM.fullmatch(text)
        if not m:
            raise DataError(f"--input {text!r}: addition takes two non-negative whole numbers joined by '+', "
                            "e.g. 123+456")
        x, y = m.group(1), m.group(2)
        n = max(len(x), len(y))
        a = torch.tensor([[int(c) for c in reversed(x.zfill(n))] + [0]])
        b = torch.tensor([[int(c) for c in reversed(y.zfill(n))] + [0]])
        return Batch({"text": a * 10 + b}, _sum_digits(a, b), difficulty=n)

    def decode(self, prediction: Tensor) -> str:
        digits = "".join(str(int(v)) for v in reversed(prediction.flatten().tolist()))
        return digits.lstrip("0") or "0"
