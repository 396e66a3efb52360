"""output_text: an autoregressive text decoder on the Thinker's causal layers, cross-attending to a state."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from th1nker.blocks.base import BuildContext
from th1nker.blocks.configs import TextOutputConfig
from th1nker.blocks.output import OutputLayer
from th1nker.omni.layers import KVCache, TransformerBlock
from th1nker.omni.thinker import sample
from th1nker.registry import register
from th1nker.tasks.base import IGNORE


@register("output_text")
class TextOutput(OutputLayer):
    """Decodes text of its own length from the state its call reads (causal self-attention over the tokens
    so far, cross-attention to the state). A step records that state; the loss decodes it with teacher
    forcing (start token + target), a prediction decodes greedily or by sampling with a KV cache, so a
    step's answer is decoded from that step's state alone and only when asked for."""

    def __init__(self, config: TextOutputConfig, ctx: BuildContext):
        super().__init__(config, ctx)
        self.start = ctx.spec.classes  # the start token: one id past the answer vocabulary
        self.embed = nn.Embedding(ctx.spec.classes + 1, ctx.dim)
        self.layers = nn.ModuleList(TransformerBlock(ctx.dim, config.heads, config.hidden, causal=True, cross=True)
                                    for _ in range(config.layers))
        for p in [*self.layers.parameters(), self.embed.weight]:
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def logits(self, latent: Tensor) -> Tensor:
        return latent  # the state itself: decoded by `loss` and `predict`

    def decode_logits(self, state: Tensor, tokens: Tensor, caches: list[KVCache] | None = None) -> Tensor:
        """Next-token logits (B, T, classes) after each of `tokens` (B, T), the start token included."""
        h = self.embed(tokens)
        for i, layer in enumerate(self.layers):
            h = layer(h, cache=caches[i] if caches else None, context=state)
        return self.head(self.norm(h))

    def loss(self, state: Tensor, target: Tensor) -> Tensor:
        """Teacher forcing: position i sees the start token and target[:i] (IGNORE after the answer)."""
        start = torch.full_like(target[:, :1], self.start)
        tokens = torch.cat([start, target[:, :-1].clamp(min=0)], dim=1)
        logits = self.decode_logits(state, tokens)
        return F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=IGNORE)

    @torch.no_grad()
    def predict(self, state: Tensor, use_cache: bool = True) -> Tensor:
        """(B, max_len) decoded ids; with the cache each token runs alone over the cached keys and values,
        without it every token reruns the whole prefix (the same tokens)."""
        c = self.config
        g = torch.Generator(device=state.device).manual_seed(0) if c.temperature > 0 else None
        caches = [KVCache() for _ in self.layers] if use_cache else None
        tokens = torch.full((state.shape[0], 1), self.start, dtype=torch.long, device=state.device)
        for _ in range(c.max_len):
            logits = self.decode_logits(state, tokens[:, -1:] if use_cache else tokens, caches)[:, -1]
            tokens = torch.cat([tokens, sample(logits, c.temperature, c.top_k, c.top_p, g)[:, None]], dim=1)
        return tokens[:, 1:]
