"""Generation from a trained thinking LM (`th1nker generate`'s code): tokens/s with and without the KV cache.

Greedy, batch 1, r iterations per token, a prompt cut from the held-out code; the KV cache keeps each
block call's keys and values (one cache per iteration of the core). Four paths side by side, in
`--rounds` interleaved rounds (medians reported): uncached (the whole sequence every token), the eager
KV cache, and `--compile`'s static cache with each thinking step as one compiled graph (`compiled`,
th1nker.fused_step) or with one compiled graph per block call (`compiled_per_block`, `fuse_steps=False`),
both compiled before timing. Reports whether every path produced the same tokens, and the speed-up in CPU time too
(the process's, less sensitive to a busy machine than the wall clock).

    python benchmarks/thinking_lm_generate.py recipes/thinking_lm.yaml runs/thinking_lm [--new 256] [--steps 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from th1nker.generate import decode_text, generate
from th1nker.train.evaluate import load_model


def timed(model, prompt, new, steps, **kw):
    """(tokens, wall-clock seconds, CPU seconds of this process)."""
    start, cpu = time.perf_counter(), time.process_time()
    tokens = [t for t, _ in generate(model, prompt, new, steps, **kw)]
    return tokens, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("checkpoint")
    parser.add_argument("--new", type=int, default=256, help="new tokens")
    parser.add_argument("--steps", type=int, default=8, help="iterations per token")
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe, task, model = load_model(args.recipe, args.checkpoint, [])
    prompt = task.held_ids[1000:1000 + args.prompt].tolist()
    paths = {"uncached": {"use_cache": False}, "cached": {}, "compiled": {"compile": True},
             "compiled_per_block": {"compile": True, "fuse_steps": False}}
    timed(model, prompt, 4, args.steps)  # warm-up
    compile_s = timed(model, prompt, args.new, args.steps, compile=True)[1]  # builds the compiled steps
    timed(model, prompt, 4, args.steps, compile=True, fuse_steps=False)  # and the per-block graphs
    seconds, cpu_seconds, tokens = {name: [] for name in paths}, {name: [] for name in paths}, {}
    for _ in range(args.rounds):
        for name, kw in paths.items():
            tokens[name], t, cpu = timed(model, prompt, args.new, args.steps, **kw)
            seconds[name].append(t)
            cpu_seconds[name].append(cpu)
    median = {name: statistics.median(ts) for name, ts in seconds.items()}
    cpu_median = {name: statistics.median(ts) for name, ts in cpu_seconds.items()}
    print(json.dumps({
        "benchmark": "thinking_lm_generate", "what": "greedy tokens/s, batch 1, without / with the KV cache / "
        "with the compiled static cache (one graph per step / per block call)", "steps": args.steps, "prompt_tokens": args.prompt, "new_tokens": args.new,
        "rounds": args.rounds,
        **{f"{name}_tokens_per_s": round(args.new / t, 2) for name, t in median.items()},
        "cached_speedup": round(median["uncached"] / median["cached"], 2),
        "compiled_speedup": round(median["uncached"] / median["compiled"], 2),
        "compiled_speedup_per_round": [round(u / c, 2) for u, c in zip(seconds["uncached"], seconds["compiled"])],
        "compiled_speedup_cpu_time": round(cpu_median["uncached"] / cpu_median["compiled"], 2),
        "compiled_per_block_speedup": round(median["uncached"] / median["compiled_per_block"], 2),
        "fused_over_per_block": round(median["compiled_per_block"] / median["compiled"], 2),
        "first_compiled_call_s": round(compile_s, 1),
        "identical_tokens": all(t == tokens["uncached"] for t in tokens.values()),
        "sample": decode_text(task.tokenizer, prompt + tokens["compiled"][:64]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
