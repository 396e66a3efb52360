"""The Talker: a causal decoder that says, as codec frames, what the model thought."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from .layers import KVCache, RMSNorm, TransformerBlock

IGNORE = -100  # codes past the end of an utterance


class TalkerConfig(BaseModel):
    """Sizes of the Talker; codebooks and codebook_size are the codec's."""

    model_config = ConfigDict(extra="forbid")

    codebooks: int = Field(2, gt=0)
    codebook_size: int = Field(128, gt=1)
    dim: int = Field(128, gt=0)
    layers: int = Field(2, gt=0)
    heads: int = Field(4, gt=0)
    kv_heads: int | None = None
    hidden: int = Field(256, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)


class Talker(nn.Module):
    """Causal TransformerBlocks over frames with cross-attention to a context (B, L, dim).

    Position t reads the frames before t (a learned start vector at t = 0, then the sum of each frame's
    code embeddings) and predicts frame t: codebook k from the hidden state plus the embeddings of
    codebooks < k of that frame, and whether the utterance has ended before frame t (the stop). The
    context gets sinusoidal positions, so the decoder can find its place in what it is saying.
    """

    def __init__(self, config: TalkerConfig | None = None):
        super().__init__()
        self.config = c = config or TalkerConfig()
        self.embed = nn.Embedding(c.codebooks * c.codebook_size, c.dim)
        self.depth = nn.Embedding(c.codebooks * c.codebook_size, c.dim)
        self.start = nn.Parameter(torch.randn(c.dim) * 0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.dim, c.heads, c.hidden, c.kv_heads, causal=True, cross=True, dropout=c.dropout)
            for _ in range(c.layers))
        self.norm = RMSNorm(c.dim)
        self.heads = nn.ModuleList(nn.Linear(c.dim, c.codebook_size) for _ in range(c.codebooks))
        self.stop = nn.Linear(c.dim, 1)

    def new_cache(self, capacity: int | None = None) -> list[KVCache]:
        """An empty KV cache per layer, with room for `capacity` frames allocated at the first call."""
        return [KVCache(capacity) for _ in self.blocks]

    def _offsets(self, k: int, device) -> Tensor:
        """Where codebooks 0..k-1 start in the shared embedding tables."""
        return torch.arange(k, device=device) * self.config.codebook_size

    def _frames(self, codes: Tensor) -> Tensor:
        """Sum of the code embeddings of frames (B, T, K); IGNORE codes read as code 0."""
        return self.embed(codes.clamp(min=0) + self._offsets(codes.shape[-1], codes.device)).sum(-2)

    def _hidden(self, x: Tensor, context: Tensor, mask: Tensor | None, cache: list[KVCache] | None) -> Tensor:
        context = context + sinusoids(context.shape[1], context.shape[2], context.device).to(context.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, cache=cache[i] if cache else None, context=context, context_mask=mask)
        return self.norm(x)

    def _code_logits(self, h: Tensor, k: int, frame: Tensor) -> Tensor:
        """Logits of codebook k at hidden states h (..., dim), given codes < k of the frame (..., K)."""
        if k:
            h = h + self.depth(frame[..., :k].clamp(min=0) + self._offsets(k, h.device)).sum(-2)
        return self.heads[k](h)

    def forward(self, codes: Tensor, context: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Teacher forcing on frames (B, T, K): code logits (B, T, K, C) and stop logits (B, T + 1)."""
        b = codes.shape[0]
        x = torch.cat([self.start.expand(b, 1, -1), self._frames(codes)], dim=1)
        h = self._hidden(x, context, mask, None)
        logits = torch.stack([self._code_logits(h[:, :-1], k, codes) for k in range(len(self.heads))], dim=2)
        return logits, self.stop(h).squeeze(-1)

    def loss(self, codes: Tensor, context: Tensor, mask: Tensor | None = None, stop_weight: float = 1.0) -> Tensor:
        """Code cross-entropy over real frames + stop_weight * stop cross-entropy up to each end."""
        logits, stop = self(codes, context, mask)
        ce = F.cross_entropy(logits.flatten(0, -2).float(), codes.flatten(), ignore_index=IGNORE)
        lengths = (codes[..., 0] != IGNORE).sum(1)
        positions = torch.arange(stop.shape[1], device=stop.device)
        scored = positions <= lengths[:, None]
        ends = (positions == lengths[:, None]).float()
        bce = F.binary_cross_entropy_with_logits(stop.float()[scored], ends[scored])
        return ce + stop_weight * bce

    def _greedy_frame(self, h: Tensor) -> Tensor:
        """Codes (..., K) of one frame from hidden states (..., dim), codebook by codebook."""
        frame = torch.zeros(*h.shape[:-1], len(self.heads), dtype=torch.long, device=h.device)
        for k in range(len(self.heads)):
            frame[..., k] = self._code_logits(h, k, frame).argmax(-1)
        return frame

    @torch.no_grad()
    def next_frames(self, codes: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, T, K): each frame of `codes` as the Talker predicts it from the true frames before it
        (codebook k greedily, given its own codes < k of that frame)."""
        b = codes.shape[0]
        x = torch.cat([self.start.expand(b, 1, -1), self._frames(codes)], dim=1)
        return self._greedy_frame(self._hidden(x, context, mask, None)[:, :-1])

    @torch.no_grad()
    def generate(self, context: Tensor, mask: Tensor | None, max_frames: int,
                 use_cache: bool = True) -> tuple[Tensor, Tensor]:
        """Greedy frames (B, T, K), IGNORE after each utterance stops, and the lengths (B,).

        Generation ends when every row has stopped or after `max_frames` frames.
        """
        b = context.shape[0]
        cache = self.new_cache(max_frames + 1) if use_cache else None
        x = self.start.expand(b, 1, -1)
        done = torch.zeros(b, dtype=torch.bool, device=context.device)
        frames: list[Tensor] = []
        for _ in range(max_frames):
            h = self._hidden(x, context, mask, cache)[:, -1]
            done |= self.stop(h).squeeze(-1) > 0
            if done.all():
                break
            frame = self._greedy_frame(h).masked_fill(done[:, None], IGNORE)
            frames.append(frame)
            step = self._frames(frame[:, None])  # with the cache, only the new frame is fed
            x = step if cache is not None else torch.cat([x, step], dim=1)
        codes = torch.stack(frames, 1) if frames else context.new_full((b, 0, len(self.heads)), IGNORE).long()
        return codes, (codes[..., 0] != IGNORE).sum(1)


def sinusoids(length: int, dim: int, device=None) -> Tensor:
    """(length, dim) sine/cosine position codes (the Transformer's)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table
