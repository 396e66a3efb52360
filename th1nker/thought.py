"""The Thought: everything that flows through the blocks during one run of thinking."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Source:
    """Encoded tokens a read layer attends to: (B, S, D) with a (B, S) mask (True = real)."""

    tokens: Tensor
    mask: Tensor | None = None
    grid: tuple[int, int] | None = None


@dataclass
class Output:
    """The logits an output block produced at one thinking step."""

    step: int
    block: str
    logits: Tensor
    rows: Tensor | None = None  # (B,) bool: the examples that ran the block (None = all)


@dataclass
class Thought:
    """The latent (short-term memory) with the encoded inputs, memories and a record of the run.

    latent: (B, L, D). inputs: modality -> Source, encoded once and re-read at every step.
    store: the medium-term LatentStore. longterm: long-term memory, when the recipe has one.
    trace: names of the blocks run, in order. cost: (B,) compute spent per example.
    outputs: what the output blocks produced, step by step. halted: (B,) bool, set by the probe.
    """

    latent: Tensor
    inputs: dict[str, Source]
    store: object
    longterm: object | None = None
    step: int = 0
    grid: tuple[int, int] | None = None
    trace: list[str] = field(default_factory=list)
    cost: Tensor | None = None
    outputs: list[Output] = field(default_factory=list)
    halted: Tensor | None = None
    aux: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self):
        b = self.latent.shape[0]
        if self.cost is None:
            self.cost = torch.zeros(b, device=self.latent.device)
        if self.halted is None:
            self.halted = torch.zeros(b, dtype=torch.bool, device=self.latent.device)

    def step_outputs(self, step: int | None = None) -> list[Output]:
        """The outputs produced at `step` (default: the current step)."""
        step = self.step if step is None else step
        return [o for o in self.outputs if o.step == step]

    def detach(self) -> "Thought":
        """Stop gradients into everything computed so far (truncated backprop)."""
        self.latent = self.latent.detach()
        if hasattr(self.store, "detach"):
            self.store.detach()
        self.outputs = [Output(o.step, o.block, o.logits.detach(), o.rows) for o in self.outputs]
        self.aux = {k: v.detach() if isinstance(v, Tensor) else v
                    for k, v in self.aux.items() if not k.startswith("loss/")}
        return self
