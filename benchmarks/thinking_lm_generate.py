"""Generation from a trained thinking LM (`th1nker generate`'s code): tokens/s with and without the KV cache.

Greedy, batch 1, r iterations per token, a prompt cut from the held-out code; the KV cache keeps each
block call's keys and values (one cache per iteration of the core). Reports whether both paths produced
the same tokens.

    python benchmarks/thinking_lm_generate.py recipes/thinking_lm.yaml runs/thinking_lm [--new 256] [--steps 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from th1nker.generate import decode_text, generate
from th1nker.train.evaluate import load_model


def timed(model, prompt, new, steps, use_cache):
    start = time.perf_counter()
    tokens = [t for t, _ in generate(model, prompt, new, steps, use_cache=use_cache)]
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("checkpoint")
    parser.add_argument("--new", type=int, default=256, help="new tokens")
    parser.add_argument("--steps", type=int, default=8, help="iterations per token")
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe, task, model = load_model(args.recipe, args.checkpoint, [])
    prompt = task.held_ids[1000:1000 + args.prompt].tolist()
    timed(model, prompt, 4, args.steps, True)  # warm-up
    cached, t_cached = timed(model, prompt, args.new, args.steps, True)
    full, t_full = timed(model, prompt, args.new, args.steps, False)
    print(json.dumps({
        "benchmark": "thinking_lm_generate", "what": "greedy tokens/s, batch 1, with vs without the KV cache",
        "steps": args.steps, "prompt_tokens": args.prompt, "new_tokens": args.new,
        "cached_tokens_per_s": round(args.new / t_cached, 2), "uncached_tokens_per_s": round(args.new / t_full, 2),
        "speedup": round(t_full / t_cached, 2), "identical_tokens": cached == full,
        "sample": decode_text(task.tokenizer, prompt + cached[:64]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
