"""Output layers: turn the latent into predictions, recorded on the Thought at every step."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from th1nker.blocks.base import Block, BuildContext
from th1nker.omni.layers import RMSNorm
from th1nker.registry import register
from th1nker.tasks.base import IGNORE
from th1nker.thought import Output, Thought


class OutputLayer(Block):
    """Base output layer: `logits(latent)`, `loss(logits, target)`, `predict(logits)`."""

    def __init__(self, config, ctx: BuildContext):
        super().__init__(config, ctx)
        self.norm = RMSNorm(ctx.dim)
        self.head = nn.Linear(ctx.dim, ctx.spec.classes)

    def logits(self, latent: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits.flatten(0, -2).float(), target.flatten(), ignore_index=IGNORE)

    def predict(self, logits: Tensor) -> Tensor:
        return logits.argmax(-1)

    def forward(self, thought: Thought) -> Thought:
        thought.record(Output(thought.step, self.name, self.logits(thought.latent)))
        return thought


@register("output_tokens")
class TokenOutput(OutputLayer):
    """One label per latent slot (per-position targets such as prefix parity or maze paths)."""

    def logits(self, latent: Tensor) -> Tensor:
        return self.head(self.norm(latent))

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return super().loss(logits[:, : target.shape[1]], target)


@register("output_class")
class ClassOutput(OutputLayer):
    """One label per example, from the mean of the latent slots."""

    def logits(self, latent: Tensor) -> Tensor:
        return self.head(self.norm(latent).mean(dim=1))
