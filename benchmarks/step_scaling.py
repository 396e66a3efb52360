"""Claim: thinking longer solves longer prefix-parity strings than any trained on; models of the same size
that do not iterate stay far below on the longer strings.

Three models, the same training time each, the same task (8-24 bits in training):
  recurrent   the default recipe: one set of read/think/answer weights applied for 20 steps;
  feedforward the same three blocks applied once (exactly the same parameters);
  unrolled    20 read+think blocks with separate weights in one pass (depth of 20 steps), at the width
              that matches the recurrent model's parameter count.
Accuracy is exact-sequence match on 24-, 48- and 96-bit strings. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 20


def base_recipe(minutes: float) -> dict:
    from th1nker.recipe import apply_overrides, resolve_bases

    data = resolve_bases(ROOT / "recipes" / "multistep.yaml")
    return apply_overrides(data, [f"train.max_minutes={minutes}", "train.max_updates=100000",
                                  "tracking.enabled=false", "train.checkpoint_every=100000"])


def feedforward(data: dict) -> dict:
    data = copy.deepcopy(data)
    data["schedule"]["steps"] = 1
    data["train"]["tbptt"] = {"mode": "full"}
    return data


def unrolled(data: dict, dim: int) -> dict:
    data = copy.deepcopy(data)
    blocks, step, edges = {}, [], {}
    for i in range(DEPTH):
        blocks[f"read{i}"] = dict(data["model"]["blocks"]["read"])
        blocks[f"think{i}"] = dict(data["model"]["blocks"]["think"])
        step += [f"read{i}", f"think{i}"]
    blocks["answer"] = dict(data["model"]["blocks"]["answer"])
    step.append("answer")
    for a, b in zip(step, step[1:]):
        edges[a] = [b]
    edges["answer"] = ["read0"]
    data["model"].update(dim=dim, blocks=blocks)
    data["graph"] = {"start": ["read0"], "edges": edges}
    data["schedule"] = {"kind": "fixed", "step": step, "steps": 1}
    data["train"]["tbptt"] = {"mode": "full"}
    return data


def n_params(data: dict) -> int:
    from th1nker.model import Th1nker
    from th1nker.recipe import validate_recipe
    from th1nker.tasks import make_task

    r = validate_recipe(data)
    return sum(p.numel() for p in Th1nker(r, make_task(r.task).spec).parameters())


def train(data: dict):
    """Train the recipe `data` as it says (max_updates / max_minutes): (trainer, task, fit summary)."""
    from th1nker.recipe import validate_recipe
    from th1nker.tasks import make_task
    from th1nker.train.loop import Trainer

    recipe = validate_recipe(data)
    task = make_task(recipe.task, recipe.seed)
    trainer = Trainer(recipe, task)
    with tempfile.TemporaryDirectory() as tmp:
        summary = trainer.fit(Path(tmp))
    return trainer, task, summary


def train_and_eval(data: dict, steps: list[int]) -> dict:
    from th1nker.train.evaluate import accuracy_by_steps

    trainer, task, summary = train(data)
    recipe = trainer.recipe
    result = accuracy_by_steps(trainer.eval_model, task, recipe.task.eval, steps, recipe.eval.batch_size)
    return {"params": sum(p.numel() for p in trainer.model.parameters()), "updates": summary["updates"],
            "minutes": round(summary["minutes"], 2), "accuracy": result["accuracy"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0, help="training time per model")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    minutes = 0.2 if args.quick else args.minutes
    torch.set_num_threads(2)
    base = base_recipe(minutes)
    target = n_params(base)
    dim = min(range(8, 65, 2), key=lambda d: abs(n_params(unrolled(base, d)) - target))
    models = {"recurrent": (base, [5, 10, 20, 40, 80]), "feedforward": (feedforward(base), [1]),
              "unrolled": (unrolled(base, dim), [1])}
    out = {"claim": "recurrent thinking extrapolates to longer strings; same-size non-iterating models do not",
           "train_lengths": base["task"]["train"], "minutes_per_model": minutes, "models": {}}
    for name, (data, steps) in models.items():
        out["models"][name] = train_and_eval(data, steps)
        print(f"{name}: {json.dumps(out['models'][name])}", file=sys.stderr)
    out["unrolled_dim"] = dim
    out["machine"] = f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
