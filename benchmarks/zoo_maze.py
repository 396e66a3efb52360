"""Claim: DT-net (recipes/zoo/dtnet_maze.yaml: recall + the progressive loss), trained on mazes of at most
9x9 cells, solves larger mazes by thinking longer and does not get worse past the steps it needs; a
feed-forward net with the same parameter count, trained as long, does not.

Two models, the same training time each, the same task (3-5-cell mazes in training, the paper's 5x5 to 9x9):
  dtnet        the recipe, evaluated at every size for each number of thinking steps;
  feedforward  the recipe's think block with separate weights in one pass (8 layers; DT-net's block: 4
               residual blocks = 8 convs after its recall conv), at the width that matches DT-net's
               parameter count, trained with the same loss for the same time (or --updates).
Accuracy is exact-path match (every square right) on held-out mazes. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import torch

from step_scaling import n_params, train

ROOT = Path(__file__).resolve().parents[1]
FF_LAYERS = 8


def recipe(minutes: float, updates: int, sizes: list[int], examples: int, overrides: list[str]) -> dict:
    """dtnet_maze.yaml with the budget (`updates` > 0: that many updates, else `minutes`) and `overrides`."""
    from th1nker.recipe import apply_overrides, resolve_bases

    data = resolve_bases(ROOT / "recipes" / "zoo" / "dtnet_maze.yaml")
    budget = ["train.max_minutes=null", f"train.max_updates={updates}"] if updates else \
        [f"train.max_minutes={minutes}", "train.max_updates=1000000"]
    return apply_overrides(data, budget + ["tracking.enabled=false", "train.checkpoint_every=1000000",
                                           f"task.eval={sizes}", f"task.eval_examples={examples}", *overrides])


def feedforward(data: dict, dim: int) -> dict:
    data = copy.deepcopy(data)
    data["model"]["dim"] = dim
    think = data["model"]["blocks"]["think"]
    if think["kind"] == "dtnet":  # DT-net's block: 8 convs = 4 residual blocks (after its recall conv)
        think["blocks"] = FF_LAYERS // 2
    else:
        think["layers"] = FF_LAYERS
    data["schedule"]["steps"] = 1
    data["train"]["tbptt"] = {"mode": "full"}
    return data


def maze_seconds(size: int, n: int = 32) -> float:
    """Wall time to generate one batch of `n` mazes of `size` cells."""
    from th1nker.recipe import TaskConfig
    from th1nker.tasks import make_task

    task, start = make_task(TaskConfig(kind="maze"), 0), time.perf_counter()
    task.batch(n, size, torch.Generator().manual_seed(0))
    return round(time.perf_counter() - start, 3)


def evaluate(trainer, task, horizons: dict[int, int], examples: dict[int, int], steps: list[int]) -> dict:
    """Exact-path accuracy per size at each step count up to that size's horizon (long mazes need more
    steps: the dead-end filling they need grows with the area), on `examples[size]` held-out mazes."""
    from th1nker.train.evaluate import accuracy_by_steps

    acc, seconds = {}, {}
    for size, horizon in horizons.items():
        task.config = task.config.model_copy(update={"eval_examples": examples[size]})
        wanted = sorted({s for s in steps if s <= horizon} | {horizon})
        r = accuracy_by_steps(trainer.eval_model, task, [size], wanted, trainer.recipe.eval.batch_size)
        acc[str(size)], seconds[str(size)] = r["accuracy"][str(size)], r["compute"][str(size)]["seconds"]
        print(f"  size {size}: {acc[str(size)]} ({seconds[str(size)]:.0f} s)", file=sys.stderr, flush=True)
    return {"accuracy": acc, "eval_seconds": seconds}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0, help="training time per model")
    ap.add_argument("--horizons", default="5:100,9:200,13:400,17:500,25:800,33:1000",
                    help="size:most thinking steps evaluated, per held-out size (cells per side)")
    ap.add_argument("--steps", default="10,20,40,80,120,160,200,300,400,500,600,800,1000")
    ap.add_argument("--examples", default="5:32,9:32,13:32,17:32,25:8,33:8", help="size:held-out mazes")
    ap.add_argument("--only", default="dtnet,feedforward")
    ap.add_argument("--updates", type=int, default=0, help="train every model this many updates instead of --minutes")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of dtnet_maze.yaml (repeatable), e.g. --set train.tbptt.alpha=0.01")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # measured: on 2 shared, loaded cores one thread ran 20x faster than two
    horizons = {int(k): int(v) for k, v in (x.split(":") for x in args.horizons.split(","))}
    examples = {int(k): int(v) for k, v in (x.split(":") for x in args.examples.split(","))}
    steps = [int(s) for s in args.steps.split(",")]
    minutes = 0.2 if args.quick else args.minutes
    if args.quick:
        horizons, examples = {5: 20, 7: 40}, {5: 4, 7: 4}
    base = recipe(minutes, args.updates, list(horizons), 8, args.set)
    target = n_params(base)
    dim = min(range(8, 65, 2), key=lambda d: abs(n_params(feedforward(base, d)) - target))
    out = {"claim": "DT-net trained on <= 5x5-cell mazes extrapolates to larger mazes by thinking longer; a "
                    "same-size feed-forward net trained as long does not",
           "train_sizes": base["task"]["train"], "minutes_per_model": None if args.updates else minutes,
           "updates_per_model": args.updates or None, "overrides": args.set, "examples_per_size": examples,
           "maze_batch_seconds": {str(s): maze_seconds(s) for s in (9, 33, 59)}, "models": {}}
    for name in args.only.split(","):
        data = base if name == "dtnet" else feedforward(base, dim)
        trainer, task, summary = train(data)
        result = {"params": sum(p.numel() for p in trainer.model.parameters()), "updates": summary["updates"],
                  "minutes": round(summary["minutes"], 2)}
        print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)
        result.update(evaluate(trainer, task, horizons if name == "dtnet" else dict.fromkeys(horizons, 1),
                               examples, steps if name == "dtnet" else [1]))
        out["models"][name] = result
    out["feedforward_dim"] = dim
    out["paper"] = {"dtnet_9x9_trained_59x59_solved": 1.0, "source": "Bansal et al. 2022, Fig. 1 / Table 1",
                    "sizes": "the paper's n x n maze has (n + 1) / 2 cells per side: 9x9 = 5 cells, 59x59 = 30"}
    out["machine"] = f"{platform.machine()} {torch.get_num_threads()} thread(s), torch {torch.__version__}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
