"""Claim: training the default recipe in bf16 (train.precision: bf16) gives a loss curve within noise of fp32.

Noise is measured, not assumed: fp32 is trained twice, with seeds 0 and 1; bf16 with seed 0. The curves
are means over blocks of `--every` updates; the claim holds when every block's |bf16 - fp32| is at most
the largest |fp32 seed 1 - fp32 seed 0| over the blocks (the seed-to-seed spread). Also reports the
median seconds per update of each run. Prints one JSON object.

    python benchmarks/precision_curves.py [--updates 600] [--every 50] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.train.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]


def curve(precision: str, seed: int, updates: int, every: int) -> tuple[list[float], float]:
    recipe = load_recipe(ROOT / "recipes" / "multistep.yaml",
                         [f"train.precision={precision}", f"seed={seed}", f"train.max_updates={updates}",
                          "train.ema=null", "tracking.enabled=false"])
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    losses, times = [], []
    for _ in range(updates):
        start = time.perf_counter()
        losses.append(trainer.train_update()["loss"])
        times.append(time.perf_counter() - start)
    blocks = [statistics.fmean(losses[i:i + every]) for i in range(0, updates, every)]
    return [round(b, 4) for b in blocks], statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=600)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.updates, args.every = 6, 3
    torch.set_num_threads(args.threads)
    runs = {name: curve(p, s, args.updates, args.every)
            for name, (p, s) in {"fp32_seed0": ("fp32", 0), "fp32_seed1": ("fp32", 1), "bf16_seed0": ("bf16", 0)}.items()}
    fp32, other, bf16 = (runs[k][0] for k in ("fp32_seed0", "fp32_seed1", "bf16_seed0"))
    noise = max(abs(a - b) for a, b in zip(fp32, other))
    gap = max(abs(a - b) for a, b in zip(fp32, bf16))
    print(json.dumps({
        "claim": "bf16 loss curve of the default recipe within seed-to-seed noise of fp32",
        "updates": args.updates, "block": args.every,
        **{f"curve_{k}": v[0] for k, v in runs.items()},
        **{f"median_s_per_update_{k}": round(v[1], 4) for k, v in runs.items()},
        "max_block_gap_bf16_vs_fp32": round(gap, 4), "max_block_gap_seed1_vs_seed0": round(noise, 4),
        "within_noise": gap <= noise,
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
    }))


if __name__ == "__main__":
    main()
