"""Medium-term memory: the latents of the current run, one entry per thinking step."""

from __future__ import annotations

import torch
from torch import Tensor


class LatentStore:
    """Step latents of one run, each tagged with the step that wrote it.

    Reads backpropagate into the steps that wrote the last `grad_steps` entries (None = all); older
    entries are detached, so a long run holds the graph of K steps only. At most `capacity` entries
    are kept, oldest dropped first (None = unbounded, 0 = keep nothing). One store serves one run of a
    batch: `Th1nker.start` makes a fresh one, `reset` empties it.
    """

    def __init__(self, capacity: int | None = None, grad_steps: int | None = None):
        if capacity is not None and capacity < 0 or grad_steps is not None and grad_steps < 0:
            raise ValueError(f"capacity and grad_steps must be >= 0 or None, got {capacity}, {grad_steps}")
        self.capacity = capacity
        self.grad_steps = grad_steps
        self.entries: list[Tensor] = []
        self.steps: list[int] = []

    def append(self, latent: Tensor, step: int) -> None:
        """Store the (B, L, D) latent written at `step`."""
        self.entries.append(latent)
        self.steps.append(step)
        if self.capacity is not None and len(self.entries) > self.capacity:
            del self.entries[0], self.steps[0]
        if self.grad_steps is not None and len(self.entries) > self.grad_steps:
            i = len(self.entries) - self.grad_steps - 1
            self.entries[i] = self.entries[i].detach()

    def tokens(self) -> Tensor | None:
        """All stored latents as one (B, entries * L, D) sequence, oldest first, or None when empty."""
        return torch.cat(self.entries, dim=1) if self.entries else None

    def select(self, index: Tensor) -> "LatentStore":
        """A store holding only the examples `index` of every entry (a view for one call of a few rows)."""
        part = LatentStore(self.capacity, self.grad_steps)
        part.entries, part.steps = [e[index] for e in self.entries], list(self.steps)
        return part

    def detach(self) -> None:
        """Stop gradients into every entry (a truncated-backprop window boundary)."""
        self.entries = [e.detach() for e in self.entries]

    def reset(self) -> None:
        """Forget everything: a new sample starts with an empty store."""
        self.entries, self.steps = [], []

    def __len__(self) -> int:
        return len(self.entries)
