"""Memory tiers. Import as `th1nker.memory`.

Medium-term: `LatentStore` (this run's step latents). Long-term: `LongTermMemory` (shards on disk),
`Compressor` (chunks -> latents, level by level), `Indexer` (learned top-k pre-selection), `BlockCache`.
"""

from th1nker.memory.cache import BlockCache
from th1nker.memory.compress import CompressConfig, Compressor
from th1nker.memory.indexer import Indexer, distill_loss
from th1nker.memory.longterm import LongTermMemory
from th1nker.memory.store import LatentStore

__all__ = ["LatentStore", "LongTermMemory", "Compressor", "CompressConfig", "Indexer", "distill_loss", "BlockCache"]
