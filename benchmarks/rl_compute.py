"""Compute saved by a block policy learned by RL, on a task that mixes easy and hard instances.

Trains recipes/rl.yaml supervised with its fixed schedule, then trains its probe by RL (`th1nker rl`),
then runs the fixed schedule and the learned policy (the probe schedule, greedy) on the evaluation
sets: accuracy, mean compute and mean thinking steps per difficulty, and the compute ratio.

    python benchmarks/rl_compute.py [--quick] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from th1nker.recipe import load_recipe
from th1nker.rl.compare import compare_policies
from th1nker.rl.trainer import RLTrainer
from th1nker.tasks import make_task
from th1nker.train.evaluate import load_model
from th1nker.train.loop import Trainer

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "rl.yaml"
QUICK = ["task.train=[4,8]", "task.eval=[4,8]", "task.eval_examples=32", "model.dim=16", "train.max_updates=20",
         "train.batch_size=16", "rl.updates=5", "rl.episodes=8", "schedule.steps=4"]


def train_policy(overrides: list[str]):
    """recipes/rl.yaml trained supervised with its fixed schedule, then its probe by RL:
    (recipe, task, model, supervised summary, RL summary)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        recipe = load_recipe(RECIPE, overrides + ["schedule.kind=fixed"])
        supervised = Trainer(recipe, make_task(recipe.task, recipe.seed))
        sup = supervised.fit(Path(tmp))
        sup["minutes"] = (time.time() - start) / 60
        recipe, task, model = load_model(RECIPE, Path(tmp), overrides)
        rl = RLTrainer(model, task).fit()
    return recipe, task, model, sup, rl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the script")
    parser.add_argument("--seed", type=int, default=0, help="the recipe's seed (data, init, sampling)")
    args = parser.parse_args()
    overrides = ["tracking.enabled=false", f"seed={args.seed}", *(QUICK if args.quick else [])]
    recipe, task, model, sup, rl = train_policy(overrides)
    result = compare_policies(model, task, recipe.task.eval, recipe.eval.batch_size)
    s = result["summary"]
    print(json.dumps({
        "benchmark": "rl_compute",
        "what": "fixed schedule vs the RL-trained probe policy: accuracy, mean compute (block-cost units, probe "
                "calls included) and mean thinking steps per difficulty (string length)",
        "recipe": str(RECIPE.name), "overrides": overrides, "quick": args.quick,
        "supervised": {"updates": sup["updates"], "minutes": round(sup["minutes"], 2)},
        "rl": {"updates": rl["updates"], "minutes": round(rl["minutes"], 2), "reward": recipe.rl.reward},
        "fixed": result["fixed"], "policy": result["policy"], "summary": s,
        "claims": {"accuracy_at_least_fixed": s["accuracy_policy"] >= s["accuracy_fixed"],
                   "compute_at_most_60_percent": s["compute_ratio"] <= 0.6,
                   "more_steps_on_hard": s["steps_policy_hardest"] > s["steps_policy_easiest"]},
        "device": "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
