"""Held-out bits per byte of a trained thinking LM against test-time recurrence r, and per-token KL exit.

One unroll of max(r) iterations per batch of held-out windows (task.eval windows of the held-out files);
after each iteration the head's cross-entropy at every position is kept. Bits per byte = mean nats per
token / ln 2 / (held-out bytes per token). KL exit (zero-shot, Huginn's): a position's answer is taken at
the first iteration t >= 2 whose prediction differs from iteration t - 1's by less than eps (KL), else at
the cap; the mean of those t is the iterations per token. In this measurement every position still runs
to the cap (later positions read earlier ones' states at every iteration), so it reports where the
answers settle, not compute saved.

    python benchmarks/thinking_lm_depth.py runs/thinking_lm [--baseline same_params=runs/thinking_lm_r1 ...]

Each run is read with its own resolved recipe (RUN/recipe.yaml); a baseline (a non-recurrent run) is
measured at r = 1 on the same held-out windows.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from th1nker.generate import kl
from th1nker.loop import StepEnd, think
from th1nker.train.evaluate import load_model

DEPTHS = [1, 2, 4, 8, 16, 32, 64]
EPS = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4]


@torch.no_grad()
def measure(run, depths, eps_list, examples, batch_size):
    recipe, task, model = load_model(Path(run) / "recipe.yaml", Path(run), [])
    length = recipe.task.eval[0]
    full = task.eval_batch(length, examples)
    cap = max(depths)
    nats = {r: 0.0 for r in depths}
    exit_nats = {e: 0.0 for e in eps_list}
    exit_iters = {e: 0.0 for e in eps_list}
    tokens = 0
    for lo in range(0, examples, batch_size):
        ids, target = full.inputs["text"][lo:lo + batch_size], full.target[lo:lo + batch_size]
        batch = type(full)({"text": ids}, target)
        exit_at = {e: torch.zeros_like(target) for e in eps_list}   # 0 = not yet exited
        exit_ce = {e: torch.zeros(target.shape) for e in eps_list}
        prev = None
        for event in think(model, batch, steps=cap, generator=torch.Generator().manual_seed(0)):
            if not isinstance(event, StepEnd):
                continue
            t = event.thought.step
            logits = event.thought.latest[event.thought.last_block].logits.float()
            ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(target.shape)
            if t in nats:
                nats[t] += float(ce.sum())
            if prev is not None:
                moved = kl(logits, prev)
                for e in eps_list:
                    now = (exit_at[e] == 0) & ((moved < e) | (t == cap))
                    exit_at[e][now], exit_ce[e][now] = t, ce[now]
            prev = logits
        for e in eps_list:
            exit_nats[e] += float(exit_ce[e].sum())
            exit_iters[e] += float(exit_at[e].float().sum())
        tokens += target.numel()
    to_bpb = 1 / math.log(2) / task.bytes_per_token
    return {
        "bits_per_byte": {str(r): round(nats[r] / tokens * to_bpb, 4) for r in depths},
        "kl_exit": {str(e): {"bits_per_byte": round(exit_nats[e] / tokens * to_bpb, 4),
                             "iterations_per_token": round(exit_iters[e] / tokens, 2)} for e in eps_list},
        "tokens": tokens, "window": length, "bytes_per_token": round(task.bytes_per_token, 4),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder of the recurrent model (`th1nker train ... --out RUN`)")
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME=RUN",
                        help="a non-recurrent run, measured at r = 1 (repeatable)")
    parser.add_argument("--examples", type=int, default=512, help="held-out windows")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)), help="recurrences r to measure, e.g. 1")
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the script")
    args = parser.parse_args()
    depths = [int(r) for r in args.depths.split(",")]
    depths, eps = (depths, EPS if max(depths) > 1 else []) if not args.quick else ([1, 2, 4], [1e-2])
    examples = 8 if args.quick else args.examples
    out = {"benchmark": "thinking_lm_depth", "what": "held-out bits per byte vs test-time recurrence r",
           "recurrent": measure(args.run, depths, eps, examples, args.batch_size)}
    for spec in args.baseline:
        name, _, run = spec.partition("=")
        out[name] = measure(run, [1], [], examples, args.batch_size)
    out["machine"] = f"{platform.machine()}, {torch.get_num_threads()} threads"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
