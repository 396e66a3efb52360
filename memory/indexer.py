"""The indexer: a cheap learned scorer of stored blocks, distilled from a read layer's attention."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from th1nker.omni.layers import RMSNorm


def _mlp(dim: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(RMSNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out))


class Indexer(nn.Module):
    """Scores blocks against the current latent: query(latent) . key(block).

    The key of a block is one vector (the mean over its latents), so a store of keys can be
    searched by inner product (exact torch top-k or faiss). Inputs are detached: the indexer learns
    only from `distill_loss`, as DeepSeek's lightning indexer, and never changes what it scores.
    """

    def __init__(self, dim: int, key_dim: int, hidden: int | None = None):
        super().__init__()
        self.key_dim = key_dim
        self.q = _mlp(dim, hidden or 2 * dim, key_dim)
        self.k = _mlp(dim, hidden or 2 * dim, key_dim)

    def query(self, latent: Tensor) -> Tensor:
        """(B, L, D) latent -> (B, key_dim) query."""
        return self.q(latent.detach().mean(dim=1)) / math.sqrt(self.key_dim)

    def key(self, blocks: Tensor) -> Tensor:
        """(..., M, D) compressed blocks -> (..., key_dim) keys."""
        return self.k(blocks.detach()).mean(dim=-2)

    @staticmethod
    def scores(query: Tensor, keys: Tensor) -> Tensor:
        """(B, key_dim) queries against (B, N, key_dim) keys -> (B, N) scores."""
        return (keys @ query.unsqueeze(-1)).squeeze(-1)


def distill_loss(scores: Tensor, teacher: Tensor) -> Tensor:
    """KL(teacher || softmax(scores)), averaged over examples; `teacher` (B, N) sums to 1 per row."""
    return F.kl_div(scores.float().log_softmax(dim=-1), teacher.float(), reduction="batchmean")
