"""Cleaned-memory batches: thinking without background knowledge (`train.clean_memory`)."""

from __future__ import annotations

from dataclasses import replace

import torch

from th1nker.memory.store import LatentStore
from th1nker.recipe import CleanMemoryConfig
from th1nker.tasks.base import Batch
from th1nker.thought import Thought

LONGTERM = "memory"  # the batch input that holds an example's long-term memory


def without_longterm(batch: Batch) -> Batch:
    """The batch with its long-term memory removed (each example's pool of blocks)."""
    return replace(batch, inputs={k: v for k, v in batch.inputs.items() if k != LONGTERM},
                   masks={k: v for k, v in batch.masks.items() if k != LONGTERM})


class MemoryCleaner:
    """Decides which training batches run with cleaned memory, and starts their Thought."""

    def __init__(self, config: CleanMemoryConfig):
        self.config = config
        self.cleaned = 0

    def start(self, model, batch: Batch, generator: torch.Generator) -> tuple[Batch, Thought | None]:
        """(batch, thought to think from): unchanged with probability 1 - fraction, else cleaned."""
        if float(torch.rand((), generator=generator)) >= self.config.fraction:
            return batch, None
        self.cleaned += 1
        if "longterm" in self.config.clear:
            batch = without_longterm(batch)
        store = LatentStore(capacity=0) if "medium" in self.config.clear else None
        return batch, model.start(batch, generator, store=store)
