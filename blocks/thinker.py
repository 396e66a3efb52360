"""The thinker block: the Thinker LM's causal transformer stack, run over the latent slots."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from th1nker.blocks.base import Block, BuildContext
from th1nker.blocks.configs import ThinkerBlockConfig
from th1nker.errors import DataError
from th1nker.omni.layers import RMSNorm, TransformerBlock, pop_aux_loss
from th1nker.registry import register
from th1nker.thought import AuxLoss, Thought


@register("thinker")
class ThinkerBlock(Block):
    """Causal transformer layers (RoPE, GQA, SwiGLU or MoE) over the latent, then RMSNorm; width = model.dim.

    While generating (`thought.decoding`), each call keeps its own KV cache of the earlier tokens, so a
    run over new tokens equals the run over the whole sequence. With `once`, the first call of a
    gradient window computes and the later ones reuse its result (from `thought.window.cache`).
    """

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
        if self.config.once and self.name in thought.window.cache:
            thought.latent = thought.window.cache[self.name]
            return thought
        caches = self.decode_caches(thought, thought.trace.count(self.name))
        thought.latent = self.maybe_compiled(thought, self._layers)(thought.latent, caches)
        if self.config.once:
            thought.window.cache[self.name] = thought.latent
        balance = pop_aux_loss(self) if self.config.experts else None  # (a walk over every module)
        if balance is not None and self.training and torch.is_grad_enabled():
            thought.window.losses.append(AuxLoss("balance", balance, self.aux_weight))
        return thought

    def decode_caches(self, thought: Thought, index: int) -> list:
        """The KV caches (one per layer) of this block's call `index` in the run while generating, else Nones."""
        if thought.decoding is None:
            return [None] * len(self.layers)
        caches = thought.decoding.get(self.name, index, len(self.layers))
        self._check_context(caches[0], thought.latent.shape[1])
        return caches

    @property
    def fusable(self) -> bool:
        """Whether a compiled one-token step may run this block as `_layers` inside a larger graph."""
        return not self.config.experts

    def _layers(self, h: Tensor, caches: list) -> Tensor:
        for layer, cache in zip(self.layers, caches):
            h = layer(h, cache=cache)
        return self.norm(h)

    def _check_context(self, cache, new: int) -> None:
        needed = cache.capacity if cache.fixed_size else cache.length + new
        if needed > self.config.context:
            raise DataError(f"block '{self.name}': {needed} latent slots exceed its context "
                            f"{self.config.context}; raise model.blocks.{self.name}.context or shorten the input")
