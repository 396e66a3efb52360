"""Cleaned-memory training: does a model trained with a share of its batches' long-term memory removed
keep answering without it, and at what cost with it?

Trains recipes/clean_memory.yaml (kv_rule: kv_facts whose values follow a rule of the key, so the
answer is in the memory and, for a model that learned the rule, in the question) twice for the same
number of updates: with train.clean_memory (a third of the batches without long-term memory) and
without it. Both are evaluated on the recipe's held-out pools with their memory and with it removed
(eval.clean_memory). Prints one JSON object.

    python benchmarks/clean_memory.py [--updates N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.train.evaluate import accuracy_by_steps
from th1nker.train.loop import Trainer

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "clean_memory.yaml"


def train_and_eval(updates: int, overrides: list[str]) -> dict:
    recipe = load_recipe(RECIPE, [f"train.max_updates={updates}", "train.max_minutes=null",
                                  "tracking.enabled=false", *overrides])
    task = make_task(recipe.task, recipe.seed)
    trainer = Trainer(recipe, task)
    start = time.perf_counter()
    while trainer.update < updates:
        trainer.train_update()
    minutes = (time.perf_counter() - start) / 60
    model, steps = trainer.eval_model, [recipe.schedule.steps]
    result = {"train_minutes": round(minutes, 2), "cleaned_batches": trainer.cleaner.cleaned if trainer.cleaner else 0}
    for memory in (True, False):
        model.recipe.eval.clean_memory = not memory
        acc = accuracy_by_steps(model, task, recipe.task.eval, steps)["accuracy"]
        result["with_memory" if memory else "memory_removed"] = {d: a[str(steps[0])] for d, a in acc.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=None, help="updates per model (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few updates, to check the script")
    args = parser.parse_args()
    updates = args.updates or (20 if args.quick else load_recipe(RECIPE).train.max_updates)
    base = [f"seed={args.seed}"] + (["task.eval_examples=64"] if args.quick else [])
    arms = {"clean_memory": base, "always_memory": [*base, "train.clean_memory=null"]}
    results = {name: train_and_eval(updates, overrides) for name, overrides in arms.items()}
    print(json.dumps({
        "benchmark": "clean_memory", "recipe": str(RECIPE.name), "updates": updates, "seed": args.seed,
        "what": "exact answer accuracy on held-out kv_rule pools, reading the pool (with_memory) or with the "
                "long-term memory removed (memory_removed); both models trained the same number of updates",
        "results": results, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
