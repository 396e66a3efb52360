"""An LRU cache of the most recently read long-term blocks, with hit-rate metrics."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor


class BlockCache:
    """Keeps the values of the last `capacity` distinct blocks read, by row id (least recently read out first)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.rows: OrderedDict[int, Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, row: int) -> Tensor | None:
        """The cached value of `row` (counted as a hit), or None (a miss)."""
        value = self.rows.get(row)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self.rows.move_to_end(row)
        return value

    def put(self, row: int, value: Tensor) -> None:
        self.rows[row] = value
        self.rows.move_to_end(row)
        if len(self.rows) > self.capacity:
            self.rows.popitem(last=False)

    def stats(self) -> dict:
        reads = self.hits + self.misses
        return {"capacity": self.capacity, "cached": len(self.rows), "hits": self.hits, "misses": self.misses,
                "hit_rate": self.hits / reads if reads else 0.0}
