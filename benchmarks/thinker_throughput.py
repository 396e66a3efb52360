"""Training throughput (forward + backward tokens/s) of the tiny Thinker: SDPA vs plain attention.

The plain attention (matmul, mask, softmax, matmul) exists only here: it temporarily replaces
`torch.nn.functional.scaled_dot_product_attention`, which `th1nker.omni.layers` calls. The two
variants run in alternating rounds so that a noisy machine affects both alike.

    python benchmarks/thinker_throughput.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import statistics
import time
from unittest import mock

import torch
import torch.nn.functional as F

from th1nker.omni.thinker import ThinkerConfig, ThinkerLM


def plain_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                    enable_gqa=False):
    """The textbook computation that SDPA fuses; same signature for the arguments layers.py uses."""
    if enable_gqa:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    if is_causal:
        attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = F.dropout(scores.softmax(dim=-1), dropout_p)
    return weights @ v


def step_seconds(model: ThinkerLM, ids: torch.Tensor, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss, _ = model.loss(ids)
        loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the script")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads; 1 is steadier on a machine shared with other jobs")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per variant")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = ThinkerConfig()
    if args.quick:
        config = ThinkerConfig(vocab=500, dim=64, layers=2, heads=4, hidden=128)
        args.batch, args.seq, args.rounds, args.steps = 2, 32, 1, 2

    torch.manual_seed(0)
    model = ThinkerLM(config).train()
    model.check_finite = False  # time the model, not the guard
    ids = torch.randint(0, config.vocab, (args.batch, args.seq + 1))
    variants = {"sdpa": contextlib.nullcontext,
                "plain": lambda: mock.patch.object(F, "scaled_dot_product_attention",
                                                   plain_attention)}
    losses, times = {}, {name: [] for name in variants}
    for name, patch in variants.items():  # warm-up, and check both compute the same loss
        with patch(), torch.no_grad():
            losses[name] = model.loss(ids)[0].item()
        with patch():
            step_seconds(model, ids, 1)
    for _ in range(args.rounds):
        for name, patch in variants.items():
            with patch():
                times[name] += step_seconds(model, ids, args.steps)

    tokens = args.batch * args.seq
    rate = {name: tokens / statistics.median(t) for name, t in times.items()}
    print(json.dumps({
        "benchmark": "thinker_throughput",
        "what": "training tokens/s, forward + backward, median step",
        "config": config.model_dump(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": args.batch, "seq": args.seq, "steps_per_variant": args.rounds * args.steps,
        "sdpa_tokens_per_s": round(rate["sdpa"], 1),
        "plain_tokens_per_s": round(rate["plain"], 1),
        "sdpa_over_plain": round(rate["sdpa"] / rate["plain"], 3),
        "loss_abs_diff": abs(losses["sdpa"] - losses["plain"]),
        "device": "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
