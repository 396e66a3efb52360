"""The thinker block: the Thinker LM's causal transformer stack, run over the latent slots."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from th1nker.blocks.base import Block, BuildContext
from th1nker.errors import DataError, RecipeError
from th1nker.omni.layers import RMSNorm, TransformerBlock
from th1nker.omni.thinker import ThinkerConfig
from th1nker.recipe import BlockConfig
from th1nker.registry import register
from th1nker.thought import Thought

TINY = ThinkerConfig()  # μOmni's tiny Thinker: the defaults below


@register("thinker")
class ThinkerBlock(Block):
    """Causal transformer layers (RoPE, GQA, SwiGLU or MoE) over the latent, then RMSNorm; width = model.dim."""

    class Config(BlockConfig):
        layers: int = Field(TINY.layers, gt=0, description="transformer layers")
        heads: int = Field(TINY.heads, gt=0, description="attention heads; divide model.dim")
        kv_heads: int | None = Field(TINY.kv_heads, gt=0,
                                     description="key/value heads (grouped-query attention); null = heads")
        hidden: int = Field(TINY.hidden, gt=0, description="feed-forward width (per expert)")
        context: int = Field(TINY.context, gt=0, description="most latent slots it takes")
        experts: int = Field(TINY.experts, ge=0, description="experts per layer (a top-k mixture); 0 = one SwiGLU")
        top_k: int = Field(TINY.top_k, gt=0, description="experts each slot is routed to")
        dropout: float = Field(TINY.dropout, ge=0, lt=1, description="dropout in training")

    def __init__(self, config, ctx: BuildContext):
        super().__init__(config, ctx)
        kv = config.kv_heads or config.heads
        if ctx.dim % config.heads or config.heads % kv:
            raise RecipeError(f"model.blocks.{ctx.name}: heads {config.heads} must divide model.dim {ctx.dim} "
                              f"and kv_heads {kv} must divide heads")
        if config.experts and config.top_k > config.experts:
            raise RecipeError(f"model.blocks.{ctx.name}: top_k {config.top_k} exceeds experts {config.experts}")
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
        return thought
