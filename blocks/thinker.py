"""The thinker block: the Thinker LM's causal transformer stack, run over the latent slots."""

from __future__ import annotations

import torch
from torch import nn

from th1nker.blocks.base import Block, BuildContext
from th1nker.blocks.configs import ThinkerBlockConfig
from th1nker.errors import DataError
from th1nker.omni.layers import RMSNorm, TransformerBlock, pop_aux_loss
from th1nker.registry import register
from th1nker.thought import AuxLoss, Thought


@register("thinker")
class ThinkerBlock(Block):
    """Causal transformer layers (RoPE, GQA, SwiGLU or MoE) over the latent, then RMSNorm; width = model.dim."""

    def __init__(self, config: ThinkerBlockConfig, ctx: BuildContext):
        super().__init__(config, ctx)
        self.aux_weight = ctx.aux_weight
        self.layers = nn.ModuleList(
            TransformerBlock(ctx.dim, config.heads, config.hidden, config.kv_heads, causal=True,
                             experts=config.experts, top_k=config.top_k, dropout=config.dropout)
            for _ in range(config.layers))
        self.norm = RMSNorm(ctx.dim)
        for p in self.layers.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)  # as the Thinker LM

    def forward(self, thought: Thought) -> Thought:
        h = thought.latent
        if h.shape[1] > self.config.context:
            raise DataError(f"block '{self.name}': {h.shape[1]} latent slots exceed its context "
                            f"{self.config.context}; raise model.blocks.{self.name}.context or shorten the input")
        for layer in self.layers:
            h = layer(h)
        thought.latent = self.norm(h)
        balance = pop_aux_loss(self)
        if balance is not None and self.training and torch.is_grad_enabled():
            thought.window.losses.append(AuxLoss("balance", balance, self.aux_weight))
        return thought
