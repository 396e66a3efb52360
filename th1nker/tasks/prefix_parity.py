"""Prefix parity: the cumulative XOR of a bit string. Difficulty = length."""

from __future__ import annotations

import torch
from torch import Tensor

from th1nker.errors import DataError
from th1nker.tasks import register_task
from th1nker.tasks.base import Batch, Task, TaskSpec


@register_task("prefix_parity")
class PrefixParity(Task):
    """y[i] = x[0] xor ... xor x[i]; solved by carrying a bit along the string."""

    spec = TaskSpec(vocab=2, classes=2)

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        bits = torch.randint(0, 2, (n, difficulty), generator=generator)
        return Batch({"text": bits}, torch.cumsum(bits, dim=1) % 2, difficulty=difficulty)

    def encode(self, text: str) -> Batch:
        text = text.strip()
        if not text or set(text) - {"0", "1"}:
            raise DataError(f"--input {text!r}: prefix_parity takes a string of 0 and 1, e.g. 0110")
        bits = torch.tensor([[int(c) for c in text]])
        return Batch({"text": bits}, torch.cumsum(bits, dim=1) % 2, difficulty=bits.shape[1])

    def decode(self, prediction: Tensor) -> str:
        return "".join(str(int(v)) for v in prediction.flatten())
