"""Top-k over a long-term memory's keys with faiss (IVF, HNSW or flat) (optional: `pip install 'th1nker[memory]'`)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from th1nker.errors import RecipeError


def load_faiss():
    """The faiss module, or a RecipeError that says how to install it."""
    try:
        import faiss
    except ImportError:
        raise RecipeError("search: faiss is not installed; `pip install 'th1nker[memory]'` (faiss-cpu), "
                          "or set the read_longterm block's search: torch (exact)") from None
    return faiss


KINDS = ("ivf", "hnsw", "flat")


class FaissIndex:
    """A faiss inner-product index over every key of a LongTermMemory (built once, in memory).

    kind "ivf": `nlist` coarse clusters (default sqrt(keys)) trained on up to `train_rows` keys spread
    over the shards; a query scans the `nprobe` nearest. "hnsw": a graph with `hnsw_m` links per key,
    searched with `ef_search` candidates. "flat": exact, brute force. A row with several keys is indexed
    by each and scores as its best one (the exact search's log-sum-exp, approximated by its largest term).
    """

    def __init__(self, memory, kind: str = "ivf", nlist: int | None = None, nprobe: int = 16,
                 hnsw_m: int = 32, ef_search: int = 64, train_rows: int = 1 << 16):
        faiss = load_faiss()
        if kind not in KINDS:
            raise RecipeError(f"faiss index kind {kind!r}: choose one of {', '.join(KINDS)}")
        self.kind, self.rows, self.key_vectors, dim = kind, len(memory), memory.key_vectors, memory.key_dim
        if kind == "ivf":
            nlist = nlist or max(1, min(4096, int(math.sqrt(self.rows * self.key_vectors))))
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            per_shard = max(1, train_rows // max(1, len(memory.shards) * self.key_vectors))
            sample = torch.cat([keys for _, keys in memory.key_chunks(per_shard=per_shard)])
            self.index.train(np.ascontiguousarray(sample.reshape(-1, dim).numpy()))
            self.index.nprobe = nprobe
        elif kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efSearch = ef_search
        else:
            self.index = faiss.IndexFlatIP(dim)
        for _, keys in memory.key_chunks():  # key j of row i is vector i * key_vectors + j
            self.index.add(np.ascontiguousarray(keys.reshape(-1, dim).numpy()))

    def search(self, query: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """(scores, row ids), each (Q, k), best first; a slot with no hit repeats the best row at -inf."""
        v = self.key_vectors
        scores, ids = self.index.search(np.ascontiguousarray(query.detach().float().cpu().numpy()), k * v)
        scores, rows = torch.from_numpy(scores), torch.from_numpy(ids) // v  # -1 (no hit) stays negative
        if v > 1:
            scores, rows = _best_per_row(scores, rows, k)
        missing = rows < 0
        rows = torch.where(missing, rows[:, :1].clamp(min=0), rows)
        return scores.masked_fill(missing, -math.inf), rows


def _best_per_row(scores: Tensor, rows: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Hits sorted best first, several per row -> the first k distinct rows of each query (-1 pads)."""
    out_s, out_r = torch.full((len(rows), k), -math.inf), torch.full((len(rows), k), -1, dtype=torch.long)
    for q, (s, r) in enumerate(zip(scores.tolist(), rows.tolist())):
        seen = {}
        for score, row in zip(s, r):
            if row >= 0 and row not in seen:
                seen[row] = score
                if len(seen) == k:
                    break
        out_r[q, :len(seen)] = torch.tensor(list(seen), dtype=torch.long)
        out_s[q, :len(seen)] = torch.tensor(list(seen.values()))
    return out_s, out_r
