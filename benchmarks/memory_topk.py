"""Top-k over a large on-disk long-term memory: exact torch search vs faiss (flat, IVF, HNSW), latency and recall.

10^6 keys of width 256 (a mixture of 4096 Gaussian clusters, as learned keys cluster) in 64k-row
safetensors shards; queries are stored keys plus noise. Exact search streams the memory-mapped shards
through chunked matmuls and a running torch.topk merge; faiss (when importable) builds a flat index
(brute force), an IVF-flat index probed at several `nprobe`, and an HNSW graph searched at several
`efSearch`. Recall@k is measured against the exact top-k.

    python benchmarks/memory_topk.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from th1nker.memory import LongTermMemory


def make_store(path: Path, rows: int, dim: int, clusters: int, seed: int) -> tuple[LongTermMemory, float]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(clusters, dim, generator=g)
    store = LongTermMemory.create(path, dim, 1)
    start = time.perf_counter()
    for lo in range(0, rows, 1 << 16):
        n = min(1 << 16, rows - lo)
        keys = centers[torch.randint(0, clusters, (n,), generator=g)] + 0.5 * torch.randn(n, dim, generator=g)
        store.append(keys, torch.arange(lo, lo + n, dtype=torch.float32)[:, None])
    return store, time.perf_counter() - start


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up (page cache, allocations)
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), exact.tolist()))
    return hits / exact.numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10^5 keys instead of 10^6")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        store, write_s = make_store(Path(tmp) / "mem", rows, args.dim, 4096, seed=0)
        start = time.perf_counter()
        store = LongTermMemory(Path(tmp) / "mem")
        open_s = time.perf_counter() - start
        g = torch.Generator().manual_seed(1)
        asked = torch.randint(0, rows, (args.queries,), generator=g)
        queries = store.read("keys", asked) + 0.3 * torch.randn(args.queries, args.dim, generator=g)

        repeats = 1 if args.quick else 3
        exact_batch_s, (_, exact) = timed(lambda: store.search(queries, args.k), repeats)
        exact_one_s, _ = timed(lambda: store.search(queries[:1], args.k), repeats)
        results = {"exact_torch": {"batch_ms": round(1e3 * exact_batch_s, 1), "one_query_ms": round(1e3 * exact_one_s, 1),
                                   f"recall@{args.k}": 1.0}}
        try:
            import faiss

            from th1nker.memory.faiss_index import FaissIndex
        except ImportError:
            results["faiss"] = "not installed (pip install 'th1nker[memory]')"
        else:
            faiss.omp_set_num_threads(args.threads)

            def measure(index) -> dict:
                batch_s, (_, found) = timed(lambda: index.search(queries, args.k), repeats)
                one_s, _ = timed(lambda: index.search(queries[:1], args.k), repeats)
                return {"batch_ms": round(1e3 * batch_s, 2), "one_query_ms": round(1e3 * one_s, 2),
                        f"recall@{args.k}": round(recall(found, exact), 4)}

            for kind, knob, values in (("flat", None, ()), ("ivf", "nprobe", (4, 16, 64)),
                                       ("hnsw", "efSearch", (16, 64, 256))):
                start = time.perf_counter()
                index = FaissIndex(store, kind)
                entry = results[f"faiss_{kind}"] = {"build_s": round(time.perf_counter() - start, 1)}
                if kind == "ivf":
                    entry["nlist"] = index.index.nlist
                if knob is None:
                    entry.update(measure(index))
                for value in values:
                    setattr(index.index if kind == "ivf" else index.index.hnsw, knob, value)
                    entry.setdefault(f"by_{knob}", {})[str(value)] = measure(index)
                del index
        print(json.dumps({
            "benchmark": "memory_topk",
            "what": f"top-{args.k} by inner product over {rows} on-disk keys of width {args.dim}; "
                    f"batch = {args.queries} queries at once",
            "rows": rows, "dim": args.dim, "shards": len(store.shards), "write_s": round(write_s, 1),
            "open_verify_s": round(open_s, 2), "results": results,
            "threads": args.threads, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        }))


if __name__ == "__main__":
    main()
