"""Medium-term memory: the latents of the current run, one entry per thinking step."""

from __future__ import annotations

import torch
from torch import Tensor


class LatentStore:
    """Step latents of one run. Gradients flow through the last `grad_steps` entries; older
    entries are detached, and at most `capacity` entries are kept (None = unbounded)."""

    def __init__(self, capacity: int | None = None, grad_steps: int | None = None):
        self.capacity = capacity
        self.grad_steps = grad_steps
        self.entries: list[Tensor] = []
        self.steps: list[int] = []

    def append(self, latent: Tensor, step: int) -> None:
        self.entries.append(latent)
        self.steps.append(step)
        if self.capacity is not None and len(self.entries) > self.capacity:
            del self.entries[0], self.steps[0]
        if self.grad_steps is not None and len(self.entries) > self.grad_steps:
            i = len(self.entries) - self.grad_steps - 1
            self.entries[i] = self.entries[i].detach()

    def tokens(self) -> Tensor | None:
        """All stored latents as one (B, entries * L, D) sequence, or None when empty."""
        return torch.cat(self.entries, dim=1) if self.entries else None

    def detach(self) -> None:
        self.entries = [e.detach() for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)
