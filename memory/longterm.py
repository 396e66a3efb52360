"""Long-term memory on disk: append-only safetensors shards of (key, value) rows and a checksummed manifest.

DIR/manifest.json lists the shards in order with their row count and sha256; each
DIR/shard_NNNNNN.safetensors holds "keys" (rows, key_vectors * key_dim) and "values" (rows, value_dim),
float32. A row (a block) has `key_vectors` keys, one per compressed latent; its score against a query
is the log-sum-exp of theirs (`block_scores`, as the indexer scores a pool).
A shard is written to a temporary file, fsynced and renamed into place; only then is the manifest
rewritten (atomically) to list it. The manifest is the commit point: a shard file it does not list
(a crash between the shard's rename and the manifest update) is ignored, reported in `orphans`, and
replaced by the next append, which takes the same name. Opening verifies every listed shard.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from th1nker.errors import DataError
from th1nker.io import atomic_write, atomic_write_json, file_digest
from th1nker.memory.cache import BlockCache
from th1nker.memory.indexer import block_scores

MANIFEST = "manifest.json"
VERSION = 1
CHUNK = 1 << 16  # key rows scored per matmul in exact search


def sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def _write_manifest(path: Path, key_dim: int, key_vectors: int, value_dim: int, meta: dict,
                    shards: list[dict]) -> None:
    atomic_write_json(path / MANIFEST, {"version": VERSION, "key_dim": key_dim, "key_vectors": key_vectors,
                                        "value_dim": value_dim, "meta": meta, "shards": shards})


class LongTermMemory:
    """An append-only store of rows: a key to search by inner product and a value to read.

    `LongTermMemory(dir)` opens and verifies a store (DataError naming every corrupt shard);
    `LongTermMemory.create(dir, key_dim, value_dim, key_vectors=1)` starts one. Shards are memory-mapped through
    safetensors `safe_open`: search streams the keys in chunks, reads fetch single rows.
    """

    def __init__(self, path: str | Path, cache: BlockCache | None = None):
        self.path = Path(path)
        manifest = self._read_manifest()
        self.key_dim, self.value_dim = manifest["key_dim"], manifest["value_dim"]
        self.key_vectors: int = manifest.get("key_vectors", 1)
        self.meta: dict = manifest.get("meta", {})
        self.shards: list[dict] = manifest["shards"]
        self._verify()
        listed = {s["file"] for s in self.shards}
        self.orphans = sorted(p.name for p in self.path.iterdir() if p.name != MANIFEST and p.name not in listed)
        self.cache = cache
        self._handles: dict[str, object] = {}
        self._starts = self._offsets()
        self._faiss = None

    @classmethod
    def create(cls, path: str | Path, key_dim: int, value_dim: int, meta: dict | None = None,
               cache: BlockCache | None = None, key_vectors: int = 1) -> "LongTermMemory":
        """An empty store in `path` (created; must not hold a store already)."""
        path = Path(path)
        if (path / MANIFEST).exists():
            raise DataError(f"{path}: a long-term memory exists there already; open it, or choose another folder")
        _write_manifest(path, key_dim, key_vectors, value_dim, meta or {}, [])
        return cls(path, cache)

    # -- writing ---------------------------------------------------------------------------------
    @property
    def key_width(self) -> int:
        """Width of a stored key row: key_vectors keys of key_dim."""
        return self.key_vectors * self.key_dim

    def append(self, keys: Tensor, values: Tensor) -> None:
        """Add rows as one new shard: keys (n, key_vectors, key_dim) (or (n, key_dim) with one key per
        row) and values (n, value_dim)."""
        n = keys.shape[0]
        if keys.shape[1:] not in ((self.key_vectors, self.key_dim), (self.key_width,)) \
                or values.shape != (n, self.value_dim) or n == 0:
            want = f"(n, {self.key_vectors}, {self.key_dim})" if self.key_vectors > 1 else f"(n, {self.key_dim})"
            raise DataError(f"{self.path}: append expects keys {want} and values (n, {self.value_dim}) "
                            f"with n > 0, got {tuple(keys.shape)} and {tuple(values.shape)}")
        name = f"shard_{len(self.shards):06d}.safetensors"
        tensors = {"keys": keys.detach().float().cpu().reshape(n, self.key_width).contiguous(),
                   "values": values.detach().float().cpu().contiguous()}
        atomic_write(self.path / name, lambda tmp: save_file(tensors, str(tmp)))
        self.shards.append({"file": name, "rows": n, "sha256": sha256(self.path / name)})
        _write_manifest(self.path, self.key_dim, self.key_vectors, self.value_dim, self.meta, self.shards)
        self.orphans = [o for o in self.orphans if o != name]
        self._starts = self._offsets()

    # -- reading ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._starts[-1]

    def search(self, query: Tensor, k: int, backend: str = "torch") -> tuple[Tensor, Tensor]:
        """The k rows whose keys score highest against each (Q, key_dim) query, best first:
        (scores, row ids), each (Q, k). backend: "torch" (exact), or "faiss_ivf" / "faiss_hnsw"
        (approximate) / "faiss_flat" (exact); with faiss a row with several keys scores as its best key."""
        if len(self) == 0:
            raise DataError(f"{self.path}: the long-term memory is empty; add rows with `th1nker memory build`")
        if query.shape[-1] != self.key_dim:
            raise DataError(f"{self.path}: queries of width {query.shape[-1]} do not fit keys of width {self.key_dim}")
        k = min(k, len(self))
        if backend.startswith("faiss_"):
            from th1nker.memory.faiss_index import FaissIndex

            kind = backend.removeprefix("faiss_")
            if self._faiss is None or self._faiss.rows != len(self) or self._faiss.kind != kind:
                self._faiss = FaissIndex(self, kind)
            scores, rows = self._faiss.search(query, k)
        elif backend == "torch":
            scores, rows = self._exact(query.detach().float().cpu(), k)
        else:
            raise DataError(f"{self.path}: search backend {backend!r}: choose torch, faiss_ivf, faiss_hnsw or faiss_flat")
        return scores.to(query.device), rows.to(query.device)

    def key_chunks(self, chunk: int | None = None, per_shard: int | None = None):
        """(first row id, (n, key_vectors * key_dim) keys) over the store (the first `per_shard` rows of
        each shard when given), `chunk` rows at a time (default CHUNK)."""
        chunk = chunk or CHUNK
        for s, start in zip(self.shards, self._starts):
            keys, rows = self._handle(s["file"]).get_slice("keys"), min(s["rows"], per_shard or s["rows"])
            for lo in range(0, rows, chunk):
                yield start + lo, keys[lo:min(lo + chunk, rows)]

    def read(self, name: str, rows: Tensor) -> Tensor:
        """Rows of "keys" or "values" by id, any shape of ids: (*rows.shape, width). Values go through the cache."""
        width = {"keys": self.key_width, "values": self.value_dim}[name]
        cache = self.cache if name == "values" else None
        out = []
        for row in rows.flatten().tolist():
            value = cache.get(row) if cache is not None else None
            if value is None:
                value = self._row(name, row)
                if cache is not None:
                    cache.put(row, value)
            out.append(value)
        return torch.stack(out).view(*rows.shape, width) if out else torch.empty(*rows.shape, width)

    # -- internals -------------------------------------------------------------------------------
    def _exact(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        best_s, best_i = q.new_empty(q.shape[0], 0), torch.empty(q.shape[0], 0, dtype=torch.long)
        for start, keys in self.key_chunks():
            top = block_scores(q, keys.view(-1, self.key_vectors, self.key_dim)).topk(min(k, keys.shape[0]), dim=1)
            cand_s, cand_i = torch.cat([best_s, top.values], 1), torch.cat([best_i, top.indices + start], 1)
            best_s, j = cand_s.topk(min(k, cand_s.shape[1]), dim=1)
            best_i = cand_i.gather(1, j)
        return best_s, best_i

    def _row(self, name: str, row: int) -> Tensor:
        if not 0 <= row < len(self):
            raise DataError(f"{self.path}: row {row} is out of range; the store has {len(self)} rows")
        i = bisect.bisect_right(self._starts, row) - 1
        local = row - self._starts[i]
        return self._handle(self.shards[i]["file"]).get_slice(name)[local:local + 1][0]

    def _handle(self, name: str):
        if name not in self._handles:
            self._handles[name] = safe_open(str(self.path / name), framework="pt")
        return self._handles[name]

    def _offsets(self) -> list[int]:
        starts = [0]
        for s in self.shards:
            starts.append(starts[-1] + s["rows"])
        return starts

    def _read_manifest(self) -> dict:
        file = self.path / MANIFEST
        if not file.is_file():
            raise DataError(f"{self.path}: no long-term memory here ({MANIFEST} missing); "
                            "build one with `th1nker memory build`")
        try:
            manifest = json.loads(file.read_text())
            fields_ok = {"version", "key_dim", "value_dim", "shards"} <= set(manifest) and all(
                {"file", "rows", "sha256"} <= set(s) for s in manifest["shards"])
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
            fields_ok = False
        if not fields_ok:
            raise DataError(f"{file}: not a long-term memory manifest; delete the folder and rebuild it")
        if manifest["version"] != VERSION:
            raise DataError(f"{file}: manifest version {manifest['version']}, this Th1nker reads {VERSION}; rebuild it")
        return manifest

    def _verify(self) -> None:
        bad = []
        for s in self.shards:
            file = self.path / s["file"]
            if not file.is_file():
                bad.append(f"{s['file']} (missing)")
            elif sha256(file) != s["sha256"]:
                bad.append(f"{s['file']} (checksum mismatch)")
        if bad:
            raise DataError(f"{self.path}: corrupt long-term memory shard(s): {', '.join(bad)}; restore them, "
                            "or delete the folder and rebuild it with `th1nker memory build`")
