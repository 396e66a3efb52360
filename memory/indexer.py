"""The indexer: a cheap learned scorer of stored blocks, distilled from a read layer's attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from th1nker.omni.layers import RMSNorm


def _mlp(dim: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(RMSNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out))


class Indexer(nn.Module):
    """Scores blocks against the current latent: query(latent) against one key per compressed latent.

    A block's score is the log-sum-exp over its latents of query . key: the form of the read layer's
    attention share of a block (a softmax over every latent, summed per block), so a block that holds
    one matching latent scores high however many others it holds. (One key per block, the mean over
    its latents, blurs a matching fact with the block's other facts.) Stored keys are searched the same
    way (`block_scores`; exact torch top-k, or faiss). Inputs are detached: the indexer learns only
    from `distill_loss`, as DeepSeek's lightning indexer, and never changes what it scores.
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
        """(..., M, D) compressed blocks -> (..., M, key_dim) keys, one per latent."""
        return self.k(blocks.detach())

    @staticmethod
    def scores(query: Tensor, keys: Tensor) -> Tensor:
        """(B, key_dim) queries against their own pools of (B, N, M, key_dim) keys -> (B, N) block scores."""
        return torch.einsum("bd,bnmd->bnm", query, keys).logsumexp(dim=-1)


def block_scores(query: Tensor, keys: Tensor) -> Tensor:
    """(Q, key_dim) queries against (N, M, key_dim) stored keys -> (Q, N) block scores, as `Indexer.scores`."""
    n, m, d = keys.shape
    scores = (keys.reshape(n * m, d) @ query.T).view(n, m, -1)
    # one key per row: skip the log-sum-exp, an identity that doubles the exact search over 10^6 keys
    return (scores[:, 0] if m == 1 else scores.logsumexp(dim=1)).T


def distill_loss(scores: Tensor, teacher: Tensor) -> Tensor:
    """KL(teacher || softmax(scores)), averaged over examples; `teacher` (B, N) sums to 1 per row."""
    return F.kl_div(scores.float().log_softmax(dim=-1), teacher.float(), reduction="batchmean")
