"""The long-term read layer: the latent attends to the top-k memory blocks a learned indexer selects."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from th1nker.blocks.base import BuildContext
from th1nker.blocks.configs import ReadLongTermConfig
from th1nker.blocks.read import ReadLayer
from th1nker.errors import DataError
from th1nker.memory.chooser import ReadChooser
from th1nker.memory.compress import Compressor
from th1nker.memory.indexer import Indexer, distill_loss
from th1nker.registry import register
from th1nker.thought import AuxLoss, Source, Thought


@register("read_longterm")
class ReadLongTermLayer(ReadLayer):
    """Reads long-term memory: the blocks of thought.longterm that the indexer ranks top-k.

    thought.longterm is either a (B, N, chunk) tensor of token ids, each example's pool of candidate
    blocks, compressed here with gradients (trained end to end), or an on-disk LongTermMemory whose
    values are compressed blocks (built by `th1nker memory build`). On a pool, training reads every
    block (dense warm-up) and distils the read attention into the indexer; evaluation reads the top-k.
    The compressed pool is cached for the gradient window (`thought.window.cache`), so the compressor
    is trained through every window that reads it.

    With `choose: C`, evaluation reads one block, the one a `ReadChooser` picks among the indexer's
    top-C (an action inside the step, learned by `th1nker rl` with `rl.policy: reads`). `top_k` and
    `choosing` are attributes, so a comparison can read the top-k instead of the chooser's pick.
    """

    def __init__(self, config: ReadLongTermConfig, ctx: BuildContext):
        super().__init__(config, ctx)
        self.compressor = Compressor(config.compress, ctx.spec.vocab, ctx.dim)
        self.indexer = Indexer(ctx.dim, config.key_dim)
        self.chooser = ReadChooser(ctx.dim) if config.choose else None
        self.choosing, self.top_k = self.chooser is not None, config.top_k

    def source(self, thought: Thought) -> Source | None:
        memory = thought.longterm
        if memory is None:
            return None
        return self._read_pool(thought, memory) if isinstance(memory, Tensor) else self._read_store(thought, memory)

    def _read_pool(self, thought: Thought, ids: Tensor) -> Source:
        blocks = self._compressed(thought, ids)  # (B, N, M, D)
        if self.training and self.config.distractors:
            others = range(1, min(self.config.distractors, len(blocks) - 1) + 1)
            blocks = torch.cat([blocks, *(blocks.roll(r, dims=0) for r in others)], dim=1)
        n = blocks.shape[1]
        scores = self.indexer.scores(self.indexer.query(thought.latent), self.indexer.key(blocks))
        if self.training and torch.is_grad_enabled() and self.config.distill:
            loss = distill_loss(scores, self.block_attention(thought.latent, blocks))
            thought.window.losses.append(AuxLoss(f"indexer.{self.name}", loss, self.config.distill, reduce="sum"))
        if self.choosing and not self.training:
            prior, top = scores.topk(min(self.config.choose, n), dim=1)
            candidates = blocks.gather(1, top[:, :, None, None].expand(-1, -1, *blocks.shape[2:]))
            return Source(self._chosen(thought, candidates, prior))
        k = n if self.training and self.config.dense_train else min(self.top_k, n)
        if k < n:
            top = scores.topk(k, dim=1).indices
            blocks = blocks.gather(1, top[:, :, None, None].expand(-1, -1, *blocks.shape[2:]))
        return Source(blocks.flatten(1, 2))

    def _compressed(self, thought: Thought, ids: Tensor, cache: bool = True) -> Tensor:
        """(B, N, chunk) ids -> (B, N, M, D), compressed once per gradient window (`cache`: False for ids
        that change from call to call)."""
        b, n, _ = ids.shape
        key = f"compressed/{self.name}"
        cache = cache and not self.config.compress.conditioned
        blocks = thought.window.cache.get(key) if cache else None
        if blocks is None:
            cond = thought.latent.repeat_interleave(n, 0) if self.config.compress.conditioned else None
            blocks = self.compressor(ids.flatten(0, 1), cond).unflatten(0, (b, n))
            if cache:
                thought.window.cache[key] = blocks
        return blocks

    def _read_store(self, thought: Thought, memory) -> Source:
        b, _, d = thought.latent.shape
        m = self.compressor.latents
        if memory.value_dim != m * d:
            raise DataError(f"{memory.path}: values of width {memory.value_dim}, but block '{self.name}' reads "
                            f"{m} latents of width {d} ({m * d}); build the store with this recipe")
        choosing = self.choosing and not self.training
        k = self.config.choose if choosing else self.top_k
        scores, rows = memory.search(self.indexer.query(thought.latent), k, self.config.search)
        values = memory.read("values", rows.cpu()).to(thought.latent)
        if not choosing:
            thought.reads[self.name] = rows
            return Source(values.view(b, -1, d))
        candidates = values.view(b, rows.shape[1], m, d)
        chosen = self._chosen(thought, candidates, scores)
        thought.reads[self.name] = rows.gather(1, thought.choices[-1].index[:, None])
        return Source(chosen)

    def _chosen(self, thought: Thought, candidates: Tensor, prior: Tensor) -> Tensor:
        """(B, M, D): the one of each example's (B, C, M, D) candidates that the chooser picks."""
        pick = self.chooser.choose(self.name, thought, candidates, prior)
        return candidates[torch.arange(len(pick), device=pick.device), pick]

    def candidates(self, batch, memory=None) -> int:
        """Blocks an example can read from: its pool, or the on-disk `memory`."""
        return len(memory) if memory is not None else batch.inputs["memory"].shape[1]

    @torch.no_grad()
    def block_attention(self, latent: Tensor, blocks: Tensor) -> Tensor:
        """(B, N) share of this layer's attention (mean over heads and latent slots) on each of N blocks."""
        b, n, m, _ = blocks.shape
        attn = self.attn
        q, k = attn.project_q(self.norm(latent)), attn.project_kv(blocks.flatten(1, 2))[0]
        if attn.rotary is not None:
            q, k = attn.rotary(q), attn.rotary(k)
        k = k.repeat_interleave(attn.heads // attn.kv_heads, dim=1)
        weights = (q @ k.transpose(-1, -2) / math.sqrt(attn.head_dim)).softmax(dim=-1)  # (B, H, L, N * M)
        return weights.mean(dim=(1, 2)).view(b, n, m).sum(dim=-1)
