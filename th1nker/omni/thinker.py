"""The Thinker: a decoder-only causal LM over text tokens or projected image/audio embeddings."""

from __future__ import annotations

import os
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from .layers import (KVCache, RMSNorm, Rotary, StaticKVCache, TransformerBlock, pop_aux_loss, reserve_rotary,
                     static_capacity)


class ThinkerConfig(BaseModel):
    """Sizes of the Thinker; the defaults are μOmni's tiny model."""

    model_config = ConfigDict(extra="forbid")

    vocab: int = 5000
    dim: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int | None = None
    hidden: int = 1024
    context: int = 512
    experts: int = 0
    top_k: int = 2
    tie_embeddings: bool = True
    dropout: float = 0.0
    norm_eps: float = Field(1e-6, gt=0, description="RMSNorm epsilon")
    rope_base: float = Field(10000.0, gt=0, description="rotary base (Llama's rope_theta)")
    rope_pairs: Literal["interleaved", "half"] = Field(
        "interleaved", description="channels rotated together: interleaved (2i, 2i+1) or half (i, i+d/2), "
        "Llama's (a Llama conversion then needs no q/k permutation)")


class ThinkerLM(nn.Module):
    """Token embedding, causal TransformerBlocks (RoPE, GQA, SwiGLU or MoE), final RMSNorm, head."""

    def __init__(self, config: ThinkerConfig | None = None):
        super().__init__()
        self.config = config = config or ThinkerConfig()
        self.embed = nn.Embedding(config.vocab, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.heads, config.hidden, config.kv_heads, causal=True,
                             experts=config.experts, top_k=config.top_k, dropout=config.dropout)
            for _ in range(config.layers))
        self.norm = RMSNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab, bias=False)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight
        for m in self.modules():  # the layers take their defaults; the config's values replace them
            if isinstance(m, RMSNorm):
                m.eps = config.norm_eps
            elif isinstance(m, Rotary):
                m.register_buffer("inv_freq", Rotary(m.inv_freq.numel() * 2, config.rope_base).inv_freq,
                                  persistent=False)
                m.pairs = config.rope_pairs
        # A debug option: raise at the first layer whose output is not finite. Off by default,
        # since each check is a host sync; the trainer skips non-finite updates once per update.
        self.check_finite = os.environ.get("TH1NKER_CHECK_FINITE") == "1"
        self.compile_generate = False  # generate's default for `compile` (set by eval.compile)
        self._compiled_forward = None

    def new_cache(self, capacity: int | None = None, static: bool = False) -> list[KVCache] | list[StaticKVCache]:
        """An empty KV cache, one per layer, for `forward(..., cache=...)`, with room for `capacity`
        positions allocated at the first forward (default: the context).

        `static`: fixed-size caches sharing one position tensor (`StaticKVCache`), which the caller
        advances after each forward (`cache[0].position += tokens`); what `generate(compile=True)` uses.
        """
        capacity = capacity or self.config.context
        if not static:
            return [KVCache(capacity) for _ in self.blocks]
        if capacity > self.config.context:
            raise ValueError(f"a cache of {capacity} positions exceeds the context of {self.config.context}")
        device = self.embed.weight.device
        reserve_rotary(self, capacity, device)
        position = torch.zeros((), dtype=torch.long, device=device)
        return [StaticKVCache(capacity, position) for _ in self.blocks]

    def forward(self, ids: Tensor | None = None, embeddings: Tensor | None = None,
                mask: Tensor | None = None,
                cache: list[KVCache] | None = None) -> tuple[Tensor, Tensor]:
        """Logits (B, T, vocab) and final hidden states (B, T, dim).

        Takes token `ids` (B, T) or ready `embeddings` (B, T, dim), e.g. projected image or audio
        tokens. `mask` (B, S) marks real positions (True) among all keys, the cached ones included.
        """
        if (ids is None) == (embeddings is None):
            raise ValueError("pass exactly one of ids or embeddings")
        x = self.embed(ids) if embeddings is None else embeddings
        length = (cache[0].length if cache else 0) + x.shape[1]
        if isinstance(length, int) and length > self.config.context:  # a static cache checked its size
            raise ValueError(f"{length} positions exceed the context of {self.config.context}")
        x = self._guard(self.drop(x), "the input embeddings")
        for i, block in enumerate(self.blocks):
            x = self._guard(block(x, mask=mask, cache=cache[i] if cache else None), f"blocks.{i}")
        hidden = self.norm(x)
        return self._guard(self.head(hidden), "the head"), hidden

    def _guard(self, x: Tensor, where: str) -> Tensor:
        if self.check_finite and not torch.isfinite(x).all():
            raise FloatingPointError(f"ThinkerLM: NaN or Inf in the output of {where}")
        return x

    def loss(self, ids: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(Next-token cross-entropy on `ids` (B, T), ignoring padding, MoE aux loss)."""
        logits, _ = self(ids[:, :-1], mask=None if mask is None else mask[:, :-1])
        targets = ids[:, 1:] if mask is None else ids[:, 1:].masked_fill(~mask[:, 1:].bool(), -100)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        balance = pop_aux_loss(self)
        return ce, balance if balance is not None else ce.new_zeros(())

    @torch.no_grad()
    def generate(self, ids: Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
                 use_cache: bool = True, seed: int | None = None, compile: bool | None = None) -> Tensor:
        """Append up to `max_new_tokens` tokens to `ids` (B, T); greedy when temperature is 0.

        Rows that reached `eos_id` keep receiving it; generation stops once every row has.
        Without the cache the whole sequence is recomputed for every token. `compile` decodes through
        a static cache with one compiled forward (built at the first call, reused by later ones of
        the same batch size and cache bucket; CUDA graphs on a GPU); the prompt runs eagerly. Its
        default is `self.compile_generate`; the uncached path always runs eagerly.
        """
        if compile and not use_cache:
            raise ValueError("compile decodes through the cache; it cannot be combined with use_cache=False")
        compile = use_cache and (self.compile_generate if compile is None else compile)
        if ids.shape[1] + max_new_tokens > self.config.context:
            raise ValueError(f"prompt {ids.shape[1]} + {max_new_tokens} new tokens exceed "
                             f"the context of {self.config.context}")
        was_training = self.training
        self.eval()
        generator = None
        if seed is not None:
            generator = torch.Generator(device=ids.device).manual_seed(seed)
        needed = ids.shape[1] + max_new_tokens
        if compile:  # capacities in powers of two: prompts of other lengths reuse the compiled step
            needed = static_capacity(needed, self.config.context)
        cache = self.new_cache(needed, static=compile) if use_cache else None
        decode = self._decode_step() if compile else self
        forward = self  # the prompt (and every step, without compile) runs eagerly
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        out = ids.new_empty(ids.shape[0], ids.shape[1] + max_new_tokens)
        out[:, : ids.shape[1]] = ids
        end, step = ids.shape[1], ids
        for _ in range(max_new_tokens):
            logits, _ = forward(step if use_cache else out[:, :end], cache=cache)
            if compile:
                cache[0].position += step.shape[1]
            forward = decode
            token = sample(logits[:, -1], temperature, top_k, top_p, generator)
            if eos_id is not None:
                token = token.masked_fill(done, eos_id)
                done |= token == eos_id
            out[:, end] = token
            end += 1
            if eos_id is not None and done.all():  # the stop check: the one host sync per token
                break
            step = token[:, None]  # its own tensor: a view of `out` would change strides every token
        self.train(was_training)
        return out[:, :end]

    def _decode_step(self):
        """This model's forward, compiled once for one token per row over a static cache."""
        if self._compiled_forward is None:
            cuda = self.embed.weight.device.type == "cuda"
            self._compiled_forward = torch.compile(self.forward, dynamic=False, fullgraph=True,
                                                   mode="reduce-overhead" if cuda else None)
        return self._compiled_forward


def sample(logits: Tensor, temperature: float = 0.0, top_k: int | None = None,
           top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """One token per row of `logits` (B, V): argmax at temperature 0, else top-k/top-p sampling."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass.
        drop = probs.cumsum(dim=-1) - probs >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
