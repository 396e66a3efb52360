"""Build a long-term memory from a corpus: compress it block by block with a model's read_longterm block.

Row i of the store is corpus block i: keys = the indexer's keys (one per compressed latent), value = the
compressed latents. Each shard is committed on its own, so an interrupted build leaves a store that
opens with every completed shard, and running the same build again continues after the last one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from th1nker.errors import DataError, RecipeError
from th1nker.memory.longterm import MANIFEST, LongTermMemory, sha256

RESUME_KEYS = {"recipe_sha256": "recipe (or --set)", "checkpoint": "checkpoint", "corpus_sha256": "corpus",
               "block": "read_longterm block"}  # what must match to continue a build


def longterm_block(model):
    """(name, block) of the model's first read_longterm block."""
    from th1nker.blocks.longterm import ReadLongTermLayer

    for name, block in model.blocks.items():
        if isinstance(block, ReadLongTermLayer):
            return name, block
    raise RecipeError("the recipe has no read_longterm block; long-term memory is built with its compressor and indexer")


def load_for_memory(recipe_path: Path, checkpoint: Path | None, overrides: list[str]):
    """(recipe, task, model) for building or querying; without a checkpoint, the recipe seed's initial weights."""
    from th1nker.recipe import load_recipe
    from th1nker.train.evaluate import load_model

    torch.manual_seed(load_recipe(recipe_path, overrides).seed)
    return load_model(recipe_path, checkpoint, overrides)


def check_recipe(store: LongTermMemory) -> None:
    """Refuse a store whose recipe (with its --set) has changed since the build (as `build` does to continue one)."""
    from th1nker.recipe import load_recipe

    recipe = load_recipe(Path(store.meta["recipe"]), store.meta.get("overrides", []))
    if store.meta.get("recipe_sha256") not in (None, _text_sha(recipe.to_yaml())):
        raise DataError(f"{store.path}: built with {store.meta['recipe']} as it was then, and that recipe (with "
                        "its --set) has changed since; restore it, or rebuild the memory into another --out")


def build_store(recipe_path: Path, corpus: Path, out: Path, checkpoint: Path | None = None,
                overrides: list[str] | None = None, shard_rows: int = 4096,
                progress: Callable[[int, int], None] | None = None) -> LongTermMemory:
    """Compress `corpus` into the store at `out` (created, or continued); `progress(done, total)` after each shard."""
    if shard_rows < 1:
        raise DataError(f"--shard-rows {shard_rows}: must be at least 1")
    if not corpus.is_file():
        raise DataError(f"{corpus}: corpus file not found")
    recipe, task, model = load_for_memory(recipe_path, checkpoint, overrides or [])
    name, block = longterm_block(model)
    if not hasattr(task, "encode_corpus"):
        raise DataError(f"task '{recipe.task.kind}' has no corpus format; use a task that reads corpora (kv_facts)")
    blocks = task.encode_corpus(corpus.read_text(encoding="utf-8"), str(corpus))
    meta = {"recipe": str(Path(recipe_path).resolve()), "overrides": list(overrides or []),
            "recipe_sha256": _text_sha(recipe.to_yaml()), "checkpoint": str(checkpoint.resolve()) if checkpoint else None,
            "corpus": str(corpus.resolve()), "corpus_sha256": sha256(corpus), "block": name, "blocks": len(blocks),
            "latents": block.compressor.latents, "dim": recipe.model.dim}
    store = _open_or_create(out, block.indexer.key_dim, block.compressor.latents, recipe.model.dim, meta)
    with torch.no_grad():
        for lo in range(len(store), len(blocks), shard_rows):
            latents = block.compressor(blocks[lo:lo + shard_rows])
            store.append(block.indexer.key(latents), latents.flatten(1))
            if progress:
                progress(len(store), len(blocks))
    return store


def _open_or_create(out: Path, key_dim: int, latents: int, dim: int, meta: dict) -> LongTermMemory:
    if not (out / MANIFEST).exists():
        return LongTermMemory.create(out, key_dim, latents * dim, meta, key_vectors=latents)
    store = LongTermMemory(out)
    changed = [what for k, what in RESUME_KEYS.items() if store.meta.get(k) != meta[k]]
    if changed:
        raise DataError(f"{out}: holds a memory built with another {', '.join(changed)}; "
                        "choose another --out to build a new one, or rerun the original build to continue it")
    return store


def _text_sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
