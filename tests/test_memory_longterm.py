"""Long-term memory on disk: shards and manifest, verification, exact top-k, the cache, faiss."""

import json
import shutil
import sys

import pytest
import torch

from th1nker.errors import DataError, RecipeError
from th1nker.memory import BlockCache, LongTermMemory
from th1nker.memory import longterm as longterm_module


def _store(path, shards=(5, 7, 3), key_dim=8, value_dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    store = LongTermMemory.create(path, key_dim, value_dim, meta={"note": "test"})
    keys, values = [], []
    for n in shards:
        k, v = torch.randn(n, key_dim, generator=g), torch.randn(n, value_dim, generator=g)
        store.append(k, v)
        keys.append(k)
        values.append(v)
    return store, torch.cat(keys), torch.cat(values)


def test_rows_survive_reopening(tmp_path):
    _, keys, values = _store(tmp_path / "m")
    store = LongTermMemory(tmp_path / "m")
    assert len(store) == 15 and len(store.shards) == 3 and store.meta == {"note": "test"}
    rows = torch.tensor([[0, 14], [5, 12]])
    assert torch.equal(store.read("values", rows), values[rows])
    assert torch.equal(store.read("keys", rows), keys[rows])


@pytest.mark.parametrize("chunk", [2, 4, 1 << 16])
def test_topk_equals_brute_force(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(longterm_module, "CHUNK", chunk)
    store, keys, _ = _store(tmp_path / "m", shards=(50, 37, 13, 64), key_dim=16)
    query = torch.randn(6, 16)
    scores, rows = store.search(query, 10)
    brute = (query @ keys.T).topk(10, dim=1)
    assert torch.equal(rows, brute.indices)
    assert torch.allclose(scores, brute.values)
    assert store.search(query, 1000)[1].shape == (6, 164)  # k larger than the store: every row


def test_rows_with_several_keys_score_by_log_sum_exp(tmp_path):
    store = LongTermMemory.create(tmp_path / "m", 8, 2, key_vectors=3)
    keys = torch.randn(40, 3, 8)
    store.append(keys[:25], torch.zeros(25, 2))
    store.append(keys[25:].flatten(1), torch.zeros(15, 2))  # a flat row of keys is accepted too
    query = torch.randn(4, 8)
    scores, rows = LongTermMemory(tmp_path / "m").search(query, 5)
    brute = torch.einsum("qd,nvd->qnv", query, keys).logsumexp(-1).topk(5, dim=1)
    assert torch.equal(rows, brute.indices) and torch.allclose(scores, brute.values, atol=1e-5)
    with pytest.raises(DataError, match=r"keys \(n, 3, 8\)"):
        store.append(torch.randn(2, 8), torch.zeros(2, 2))


def test_a_corrupt_shard_is_named_when_the_store_opens(tmp_path):
    _store(tmp_path / "m")
    shard = tmp_path / "m" / "shard_000001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"shard_000001\.safetensors \(checksum mismatch\)") as err:
        LongTermMemory(tmp_path / "m")
    assert "shard_000000" not in str(err.value) and "shard_000002" not in str(err.value)


def test_a_missing_shard_and_a_broken_manifest_are_reported(tmp_path):
    _store(tmp_path / "m")
    (tmp_path / "m" / "shard_000002.safetensors").unlink()
    with pytest.raises(DataError, match=r"shard_000002\.safetensors \(missing\)"):
        LongTermMemory(tmp_path / "m")
    (tmp_path / "m" / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="not a long-term memory manifest"):
        LongTermMemory(tmp_path / "m")
    with pytest.raises(DataError, match="manifest.json missing"):
        LongTermMemory(tmp_path / "nowhere")


def test_an_unlisted_shard_is_ignored_then_replaced(tmp_path):
    """A crash between a shard's rename and the manifest update leaves a shard the manifest does not list."""
    store, _, _ = _store(tmp_path / "m")
    shutil.copy(tmp_path / "m" / "shard_000000.safetensors", tmp_path / "m" / "shard_000003.safetensors")
    reopened = LongTermMemory(tmp_path / "m")
    assert len(reopened) == 15 and reopened.orphans == ["shard_000003.safetensors"]
    reopened.append(torch.ones(2, 8), torch.ones(2, 3))
    again = LongTermMemory(tmp_path / "m")
    assert len(again) == 17 and again.orphans == []
    assert torch.equal(again.read("values", torch.tensor([15, 16])), torch.ones(2, 3))


def test_create_refuses_an_existing_store_and_append_checks_shapes(tmp_path):
    store, _, _ = _store(tmp_path / "m")
    with pytest.raises(DataError, match="exists there already"):
        LongTermMemory.create(tmp_path / "m", 8, 3)
    with pytest.raises(DataError, match="append expects"):
        store.append(torch.ones(2, 7), torch.ones(2, 3))
    with pytest.raises(DataError, match="out of range"):
        store.read("values", torch.tensor([15]))
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["shards"][0]["rows"] == 5


def test_the_cache_counts_hits(tmp_path):
    _store(tmp_path / "m")
    store = LongTermMemory(tmp_path / "m", cache=BlockCache(2))
    store.read("values", torch.tensor([1, 2, 1, 3, 1, 2]))
    # 1 miss, 2 miss, 1 hit, 3 miss (evicts 2), 1 hit, 2 miss
    assert store.cache.stats() == {"capacity": 2, "cached": 2, "hits": 2, "misses": 4, "hit_rate": 2 / 6}


def test_faiss_search_matches_exact_when_it_probes_every_list(tmp_path):
    pytest.importorskip("faiss")
    from th1nker.memory.faiss_index import FaissIndex

    store, keys, _ = _store(tmp_path / "m", shards=(300, 300), key_dim=16)
    index = FaissIndex(store, nlist=8, nprobe=8)
    query = torch.randn(5, 16)
    _, rows = index.search(query, 5)
    assert torch.equal(rows, (query @ keys.T).topk(5, dim=1).indices)
    scores, rows = store.search(query, 5, backend="faiss_ivf")  # the default index: approximate
    assert rows.shape == (5, 5) and bool((scores[:, :-1] >= scores[:, 1:]).all())


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_faiss_flat_and_hnsw_find_the_exact_top_k_of_a_small_store(tmp_path, kind):
    pytest.importorskip("faiss")
    store, keys, _ = _store(tmp_path / "m", shards=(300, 300), key_dim=16)
    query = torch.randn(5, 16)
    _, rows = store.search(query, 5, backend=f"faiss_{kind}")  # HNSW searches 64 candidates among 600 keys
    assert torch.equal(rows, (query @ keys.T).topk(5, dim=1).indices)


def test_faiss_ranks_a_row_with_several_keys_by_its_best_key(tmp_path):
    pytest.importorskip("faiss")
    from th1nker.memory.faiss_index import FaissIndex

    store = LongTermMemory.create(tmp_path / "m", 16, 1, key_vectors=4)
    keys = torch.randn(200, 4, 16)
    store.append(keys, torch.zeros(200, 1))
    query = torch.randn(5, 16)
    scores, rows = FaissIndex(store, nlist=4, nprobe=4).search(query, 6)  # every list probed: exact over keys
    best = torch.einsum("qd,nvd->qnv", query, keys).amax(-1).topk(6, dim=1)
    assert torch.equal(rows, best.indices) and torch.allclose(scores, best.values, atol=1e-4)


def test_faiss_missing_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    store, _, _ = _store(tmp_path / "m")
    with pytest.raises(RecipeError, match=r"pip install 'th1nker\[memory\]'"):
        store.search(torch.randn(1, 8), 2, backend="faiss_ivf")
