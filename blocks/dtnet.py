"""DT-net's recurrent block (Bansal et al. 2022, "End-to-end Algorithm Synthesis with Recurrent Networks"):
recall = the encoded input concatenated to the latent, one conv back to the width, then residual blocks of
two convs with ReLU; no normalisation anywhere, so the latent is free to grow or stay sparse over steps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from th1nker.blocks.base import Block, BuildContext
from th1nker.blocks.configs import DTNetConfig
from th1nker.blocks.grid import to_map, to_slots
from th1nker.errors import DataError
from th1nker.registry import register
from th1nker.thought import Thought


def _conv(c_in: int, c_out: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)


@register("dtnet")
class DTNetBlock(Block):
    """DT-net's recurrent block: concat(latent, input) -> conv -> `blocks` x (conv, ReLU, conv, + skip, ReLU)."""

    def __init__(self, config: DTNetConfig, ctx: BuildContext):
        super().__init__(config, ctx)
        d, k = ctx.dim, config.kernel
        self.recall = config.recall
        self.first = _conv(2 * d if config.recall else d, d, k)
        self.blocks = nn.ModuleList(nn.ModuleList([_conv(d, d, k), _conv(d, d, k)]) for _ in range(config.blocks))

    def forward(self, thought: Thought) -> Thought:
        who = f"block '{self.name}' (dtnet)"
        h = to_map(thought.latent, thought.grid, who)
        if self.recall:
            if len(thought.inputs) != 1:
                raise DataError(f"{who}: recall concatenates the one encoded input, the batch has "
                                f"{sorted(thought.inputs)}; set model.blocks.{self.name}.recall: false")
            x = next(iter(thought.inputs.values())).tokens
            if x.shape != thought.latent.shape:
                raise DataError(f"{who}: the input {tuple(x.shape)} and the latent {tuple(thought.latent.shape)} "
                                "differ; give the latent the input's slots (model.states.*.slots: input)")
            h = torch.cat([h, to_map(x, thought.grid, who)], dim=1)
        h = self.first(h)
        for conv1, conv2 in self.blocks:
            h = F.relu(h + conv2(F.relu(conv1(h))))
        thought.latent = to_slots(h)
        return thought
