"""The probe: predicts which block should run next, or that thinking should stop."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from th1nker.blocks.base import Block, BuildContext
from th1nker.blocks.configs import ProbeConfig
from th1nker.omni.layers import RMSNorm
from th1nker.registry import register
from th1nker.thought import Thought


@register("probe")
class Probe(Block):
    """Logits over the next block plus a halt logit whose bias starts strongly negative."""

    def __init__(self, config: ProbeConfig, ctx: BuildContext):
        super().__init__(config, ctx)
        self.actions = ctx.actions
        self.norm = RMSNorm(ctx.dim)
        self.net = nn.Sequential(nn.Linear(2 * ctx.dim, config.hidden), nn.GELU(),
                                 nn.Linear(config.hidden, len(ctx.actions) + 1))
        with torch.no_grad():
            self.net[-1].bias[-1] = config.halt_bias

    def logits(self, latent: Tensor) -> Tensor:
        """(B, n_actions + 1): the next block's logits, halt last."""
        h = self.norm(latent)
        return self.net(torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=-1))

    def forward(self, thought: Thought) -> Thought:
        """A probe changes nothing when called: the probe and policy schedules ask `logits` instead."""
        return thought
