"""Greedy generation speed of the tiny Thinker with and without the KV cache.

A 16-token prompt, 64/256/512 new tokens, batch 1. The context is raised to 1024 so that
16 + 512 positions fit; that changes no weight (positions are rotary).

    python benchmarks/kv_cache.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from th1nker.omni.thinker import ThinkerConfig, ThinkerLM


def timed_generate(model: ThinkerLM, prompt: torch.Tensor, new: int, use_cache: bool):
    start = time.perf_counter()
    out = model.generate(prompt, new, use_cache=use_cache)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the script")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads; 1 is steadier on a machine shared with other jobs")
    parser.add_argument("--prompt", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = ThinkerConfig(context=1024)
    lengths = [64, 256, 512]
    if args.quick:
        config = ThinkerConfig(vocab=500, dim=64, layers=2, heads=4, hidden=128, context=1024)
        lengths = [8, 32]

    torch.manual_seed(0)
    model = ThinkerLM(config).eval()
    model.check_finite = False  # time the model, not the guard
    prompt = torch.randint(0, config.vocab, (1, args.prompt))
    model.generate(prompt, 8)  # warm-up
    model.generate(prompt, 8, use_cache=False)

    results, identical = [], True
    for new in lengths:
        cached, t_cached = timed_generate(model, prompt, new, use_cache=True)
        full, t_full = timed_generate(model, prompt, new, use_cache=False)
        identical &= torch.equal(cached, full)
        results.append({"new_tokens": new,
                        "cached_tokens_per_s": round(new / t_cached, 1),
                        "uncached_tokens_per_s": round(new / t_full, 1),
                        "speedup": round(t_full / t_cached, 2)})
    print(json.dumps({
        "benchmark": "kv_cache",
        "what": "greedy generation tokens/s, batch 1, with vs without the KV cache",
        "config": config.model_dump(), "prompt_tokens": args.prompt,
        "results": results, "identical_tokens": identical,
        "device": "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
