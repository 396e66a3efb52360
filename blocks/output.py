"""Output layers: turn the latent into predictions, recorded on the Thought at every step."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from th1nker.blocks.base import Block, BuildContext
from th1nker.blocks.grid import to_map, to_slots
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
        q = getattr(config, "halt_mode", "bce") == "q"  # HRM's Q head: two logits, halt and continue
        self.halt = nn.Linear(ctx.dim, 2 if q else 1) if getattr(config, "halt", False) else None
        if self.halt is not None:
            nn.init.constant_(self.halt.bias, config.halt_bias)

    def logits(self, latent: Tensor) -> Tensor:
        raise NotImplementedError

    def logits_of(self, thought: Thought) -> Tensor:
        """The logits of the focused state (a head that needs more of the Thought overrides this)."""
        return self.maybe_compiled(thought, self.logits)(thought.latent)

    @property
    def fusable(self) -> bool:
        """Whether a compiled one-token step may run this head as `logits(latent)` inside a larger graph: no
        halting head, and its logits come from the focused state alone."""
        return self.halt is None and type(self).logits_of is OutputLayer.logits_of

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits.flatten(0, -2).float(), target.flatten(), ignore_index=IGNORE)

    def predict(self, logits: Tensor) -> Tensor:
        return logits.argmax(-1)

    def output_loss(self, out: Output, target: Tensor) -> Tensor:
        """The loss of one recorded output; with a halting head, plus its BCE on 'exactly right' (and, for a
        Q head, the continue logit's BCE on the bootstrapped target the loop set, when it set one)."""
        loss = self.loss(out.logits, target)
        if out.halt is None:
            return loss
        pred = self.predict(out.logits.detach())
        if target.dim() == 1:
            right = pred == target
        else:
            right = ((pred[:, : target.shape[1]] == target) | (target == IGNORE)).all(1)
        halt = out.halt.float()
        bce = F.binary_cross_entropy_with_logits(halt if halt.dim() == 1 else halt[:, 0], right.float())
        if halt.dim() == 2 and out.q_next is not None:
            bce = bce + F.binary_cross_entropy_with_logits(halt[:, 1], out.q_next.float())
        return loss + self.config.halt_weight * bce

    def forward(self, thought: Thought) -> Thought:
        latent = thought.latent
        halt = self.halt(self.norm(latent).mean(dim=1)) if self.halt is not None else None
        halt = halt.squeeze(-1) if halt is not None and halt.shape[-1] == 1 else halt
        thought.record(Output(thought.step, self.name, self.logits_of(thought), halt=halt))
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


@register("output_conv2d")
class ConvTokenOutput(TokenOutput):
    """One label per square of a 2-D grid from 3x3 convs with ReLU between them (DT-net's head).

    Widths: model.dim -> `widths` (DT-net's 32, 8) -> classes, bias-free, no normalisation."""

    def __init__(self, config, ctx: BuildContext):
        super().__init__(config, ctx)
        widths = [ctx.dim, *config.widths, ctx.spec.classes]
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.ReLU()]
        self.head = nn.Sequential(*layers[:-1])
        if self.halt is None:
            self.norm = nn.Identity()

    def logits_of(self, thought: Thought) -> Tensor:
        return to_slots(self.head(to_map(thought.latent, thought.grid, f"block '{self.name}' (output_conv2d)")))
