"""Approximate top-k over a long-term memory's keys with faiss (optional: `pip install 'th1nker[memory]'`)."""

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


class FaissIndex:
    """An IVF-flat inner-product index over every key of a LongTermMemory (built once, in memory).

    `nlist` coarse clusters (default sqrt(rows)) trained on up to `train_rows` keys spread over the
    shards; a query scans the `nprobe` nearest clusters.
    """

    def __init__(self, memory, nlist: int | None = None, nprobe: int = 16, train_rows: int = 1 << 16):
        faiss = load_faiss()
        self.rows = len(memory)
        nlist = nlist or max(1, min(4096, int(math.sqrt(self.rows))))
        self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(memory.key_dim), memory.key_dim, nlist,
                                        faiss.METRIC_INNER_PRODUCT)
        per_shard = max(1, train_rows // max(1, len(memory.shards)))
        sample = torch.cat([keys for _, keys in memory.key_chunks(per_shard=per_shard)])
        self.index.train(np.ascontiguousarray(sample.numpy()))
        for _, keys in memory.key_chunks():
            self.index.add(np.ascontiguousarray(keys.numpy()))
        self.index.nprobe = nprobe

    def search(self, query: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """(scores, row ids), each (Q, k), best first; a slot with no hit repeats the best row at -inf."""
        scores, rows = self.index.search(np.ascontiguousarray(query.detach().float().cpu().numpy()), k)
        scores, rows = torch.from_numpy(scores), torch.from_numpy(rows)
        missing = rows < 0
        rows = torch.where(missing, rows[:, :1].clamp(min=0), rows)
        return scores.masked_fill(missing, -math.inf), rows
