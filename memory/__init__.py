"""Memory tiers. Import as `th1nker.memory`."""

from th1nker.memory.store import LatentStore

__all__ = ["LatentStore"]
