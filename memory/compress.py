"""Compression of input chunks into a few latents, level by level (hierarchical compression).

At each level the sequence is cut into segments; each segment plus `segment / ratio` learned
compression tokens goes read (the tokens cross-attend to the segment, and to the current latent
when conditioned) -> process (transformer layers over the tokens) -> compressed latents, which are
the next level's sequence. `method: mean` replaces every level by mean pooling (the baseline).
"""

from __future__ import annotations


import torch
from torch import Tensor, nn

from th1nker.errors import DataError
from th1nker.omni.layers import Attention, RMSNorm, TransformerBlock
from th1nker.blocks.configs import CompressConfig, LevelConfig  # noqa: F401  (the recipe fields)


class TokenLevel(nn.Module):
    """One level: segment + compression tokens -> read -> process -> segment / ratio latents."""

    def __init__(self, dim: int, level: LevelConfig, heads: int, layers: int):
        super().__init__()
        self.segment, self.out = level.segment, level.segment // level.ratio
        self.pos = nn.Parameter(torch.randn(level.segment, dim) * 0.02)
        self.tokens = nn.Parameter(torch.randn(self.out, dim) * 0.02)
        self.norm, self.context_norm = RMSNorm(dim), RMSNorm(dim)
        self.read = Attention(dim, heads, rotary=False)
        self.process = nn.ModuleList(TransformerBlock(dim, heads, 2 * dim, rotary=False) for _ in range(layers))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        n, s, d = x.shape
        segs = s // self.segment
        context = self.context_norm(x.reshape(n * segs, self.segment, d) + self.pos)
        if cond is not None:
            context = torch.cat([context, self.context_norm(cond).repeat_interleave(segs, 0)], dim=1)
        z = self.tokens.expand(n * segs, -1, -1)
        z = z + self.read(self.norm(z), context=context)
        for layer in self.process:
            z = layer(z)
        return z.reshape(n, segs * self.out, d)


class MeanLevel(nn.Module):
    """One level of mean pooling: each group of `ratio` tokens -> their mean."""

    def __init__(self, level: LevelConfig):
        super().__init__()
        self.ratio = level.ratio

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        n, s, d = x.shape
        return x.view(n, s // self.ratio, self.ratio, d).mean(dim=2)


class Compressor(nn.Module):
    """Token ids (N, chunk) -> compressed latents (N, latents, dim), optionally conditioned on a latent."""

    def __init__(self, config: CompressConfig, vocab: int, dim: int):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(config.chunk, dim) * 0.02)
        self.levels = nn.ModuleList(
            MeanLevel(lv) if config.method == "mean" else TokenLevel(dim, lv, config.heads, config.layers)
            for lv in config.levels)

    @property
    def latents(self) -> int:
        return self.config.latents

    def forward(self, ids: Tensor, cond: Tensor | None = None) -> Tensor:
        """`cond` (N, L, dim): the current latent of each block's reader (conditioned compressors only)."""
        if ids.shape[-1] != self.config.chunk:
            raise DataError(f"blocks of {ids.shape[-1]} tokens do not fit the compressor's chunk of "
                            f"{self.config.chunk}; set the read_longterm block's compress.chunk to {ids.shape[-1]}")
        if self.config.conditioned and cond is None:
            raise DataError("a conditioned compressor needs the current latent: it compresses while it reads, "
                            "it cannot build a store ahead of time; set compress.conditioned: false")
        x = self.embed(ids) + self.pos
        for level in self.levels:
            x = level(x, cond if self.config.conditioned else None)
        return x
