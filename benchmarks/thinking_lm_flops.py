"""Training FLOPs per update of a recipe, counted by torch over what the trainer runs.

The recipe's TBPTT plan is drawn `--draws` times (its own plan function and random depth); each distinct
plan runs one real training unroll of one batch (the forward of every window, the backward of the graded
ones, as `Trainer` runs it) under `torch.utils.flop_counter.FlopCounterMode`, which counts matrix
multiplications and attention (elementwise work is not counted). The mean over the draws is the expected
training FLOPs per update; times the updates of a run, its training FLOPs.

    python benchmarks/thinking_lm_flops.py recipes/thinking_lm.yaml [--set model.blocks.core.layers=20 ...]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import torch
from torch.utils.flop_counter import FlopCounterMode

from th1nker.plans import PLANS
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.train.loop import TorchRng, Trainer


def flops_per_update(recipe_path: str, overrides: list[str], draws: int = 2000) -> dict:
    """{"flops_per_update": mean, "mean_depth": mean steps per unroll, "plans": distinct plans, ...}."""
    recipe = load_recipe(recipe_path, overrides + ["tracking.enabled=false"])
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    rng = TorchRng(torch.Generator().manual_seed(recipe.seed))
    plan_fn = PLANS[recipe.train.tbptt.mode]
    plans = Counter(tuple(plan_fn(recipe.train.tbptt, recipe.schedule.steps, rng)) for _ in range(draws))
    counted = {}
    for plan in plans:
        with FlopCounterMode(display=False) as counter:
            for _ in trainer._windows(list(plan)):  # forward and backward, exactly as training runs them
                pass
        trainer.model.zero_grad(set_to_none=True)
        counted[plan] = counter.get_total_flops() * recipe.train.accumulate
    mean = sum(counted[p] * n for p, n in plans.items()) / draws
    depth = sum(sum(w.steps for w in p) * n for p, n in plans.items()) / draws
    tokens = recipe.train.batch_size * recipe.train.accumulate * max(recipe.task.train)
    return {"flops_per_update": mean, "flops_per_token": mean / tokens, "mean_depth": round(depth, 3),
            "distinct_plans": len(plans), "parameters": sum(p.numel() for p in trainer.model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="override a recipe field")
    parser.add_argument("--draws", type=int, default=2000, help="plans drawn for the mean")
    args = parser.parse_args()
    out = {"benchmark": "thinking_lm_flops", "recipe": args.recipe, "overrides": args.overrides,
           **flops_per_update(args.recipe, args.overrides, args.draws)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
