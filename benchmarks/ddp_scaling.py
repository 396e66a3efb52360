"""Data-parallel scaling on CPU: updates/s of the default recipe on 1 and on 2 gloo ranks, global batch fixed.

Every rank runs one thread (OMP_NUM_THREADS=1), so 2 ranks use 2 cores, and
scaling efficiency = (updates/s with 2 ranks / updates/s with 1 rank) / 2.
The initial latent is set to `fixed` (it costs what a random one costs): then the unroll draws only the
TBPTT windows, from the generator all ranks share, so both runs do exactly the same work per update.

    python benchmarks/ddp_scaling.py [--quick] [--updates N] [--strategy ddp|fsdp]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "multistep.yaml"
SAME_WORK = ["model.latent.init=fixed", "tracking.enabled=false"]


def worker(args) -> None:
    """One rank: warm up, then time `args.updates` updates; rank 0 prints one JSON line.

    The time spent in the gradient all_reduce is timed as well (it includes waiting for the slower rank).
    """
    import torch.distributed as dist

    from th1nker.recipe import load_recipe
    from th1nker.tasks import make_task
    from th1nker.train import distributed
    from th1nker.train.loop import Trainer

    overrides = [*SAME_WORK, f"train.distributed.strategy={args.strategy}",
                 f"train.max_updates={args.warmup + args.updates}"]
    recipe = load_recipe(args.recipe, overrides)
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    for _ in range(args.warmup):
        trainer.train_update()
    sync, synced = distributed.sync_gradients, []

    def timed_sync(model, loss):
        begin = time.perf_counter()
        loss = sync(model, loss)
        synced.append(time.perf_counter() - begin)
        return loss

    distributed.sync_gradients = timed_sync  # the trainer looks it up on the module at every step
    distributed.barrier()
    start = time.perf_counter()
    losses = [trainer.train_update()["loss"] for _ in range(args.updates)]
    distributed.barrier()
    seconds = time.perf_counter() - start
    if distributed.is_main():
        print(json.dumps({"updates_per_s": args.updates / seconds, "seconds": seconds,
                          "examples_per_s": args.updates * recipe.train.batch_size / seconds,
                          "sync_s_per_update": sum(synced) / args.updates,
                          "mean_loss": sum(losses) / len(losses)}), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


def run(ranks: int, args) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", __file__,
           "--worker", "--recipe", str(args.recipe), "--updates", str(args.updates), "--warmup", str(args.warmup),
           "--strategy", args.strategy]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the run on {ranks} rank(s) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few updates, to check the script")
    parser.add_argument("--updates", type=int, default=60, help="timed updates per run")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.updates, args.warmup = 5, 1
    if args.worker:
        return worker(args)

    import torch

    from th1nker.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    load_before = os.getloadavg()[0]
    one, two = run(1, args), run(2, args)
    print(json.dumps({
        "benchmark": "ddp_scaling", "recipe": args.recipe.name, "strategy": args.strategy, "backend": "gloo",
        "device": "cpu", "threads_per_rank": 1, "global_batch": recipe.train.batch_size,
        "updates": args.updates, "warmup": args.warmup, "quick": args.quick,
        "ranks_1": one, "ranks_2": two,
        "scaling_efficiency": two["updates_per_s"] / one["updates_per_s"] / 2,
        "same_loss": abs(one["mean_loss"] - two["mean_loss"]) <= 1e-5 * abs(one["mean_loss"]),
        "torch": torch.__version__, "cpus": os.cpu_count(), "machine": platform.machine(),
        "load_average_1min": [load_before, os.getloadavg()[0]],  # other jobs on the machine skew the timings
    }))


if __name__ == "__main__":
    main()
