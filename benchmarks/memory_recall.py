"""Delayed recall with the medium-term store: reading it vs not, perturbing it, gradient window K.

Trains recipes/memory.yaml (facts stream in one per step, a question about one of them comes after
the last) four ways, same seed and updates: reading the store with gradients into every stored step
(K = all), K = 4, K = 1, and without the read_latent block (the small latent alone must carry the
facts). Each is evaluated on fresh examples per number of facts; the K = all model is evaluated again
with each example's store replaced by another example's (shuffled) or by zeros.

    python benchmarks/memory_recall.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch
import yaml

from th1nker.memory import LatentStore
from th1nker.recipe import validate_recipe
from th1nker.loop import StepEnd, think
from th1nker.tasks import make_task
from th1nker.train.loop import Trainer

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "memory.yaml"
VARIANTS = {"store_k_all": None, "store_k4": 4, "store_k1": 1, "no_store": "none"}


def recipe_for(variant: str, updates: int):
    data = yaml.safe_load(RECIPE.read_text())
    k = VARIANTS[variant]
    if k == "none":
        del data["model"]["blocks"]["recall"], data["graph"]["edges"]["recall"]
        data["graph"]["edges"]["read"] = ["think"]
        data["schedule"]["step"] = ["read", "think", "answer"]
    else:
        data["model"]["memory"]["grad_steps"] = k
    data["train"].update(max_updates=updates, max_minutes=None)
    data["tracking"]["enabled"] = False
    return validate_recipe(data, variant)


class PerturbedStore(LatentStore):
    """A LatentStore whose reads see another example's entries ("shuffle") or zeros ("zero")."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def tokens(self):
        t = super().tokens()
        if t is None:
            return None
        return torch.zeros_like(t) if self.mode == "zero" else t.roll(1, dims=0)


@torch.no_grad()
def accuracy(model, task, difficulties, horizon: int, n: int, store: str | None = None) -> dict:
    """{facts: [accuracy right after the question (step facts + 1), accuracy at step `horizon`]}."""
    model.eval()
    out = {}
    for d in difficulties:
        batch = task.eval_batch(d, n)
        g = torch.Generator().manual_seed(1234)
        thought = model.start(batch, g, store=PerturbedStore(store) if store else None)
        at = {}
        for event in think(model, batch, steps=horizon, generator=g, thought=thought):
            step = event.thought.step
            if isinstance(event, StepEnd) and step in (d + 1, horizon):
                at[step] = round(float(task.score(model.prediction(event.thought), batch).float().mean()), 4)
        out[str(d)] = [at.get(d + 1), at[horizon]]
    return out


def run(variant: str, updates: int, examples: int) -> dict:
    torch.set_num_threads(1)
    recipe = recipe_for(variant, updates)
    task = make_task(recipe.task, recipe.seed)
    trainer = Trainer(recipe, task)
    start = time.perf_counter()
    while trainer.update < updates:
        trainer.train_update()
    minutes = (time.perf_counter() - start) / 60
    steps = max(recipe.eval.steps)
    result = {"accuracy": accuracy(trainer.eval_model, task, recipe.task.eval, steps, examples),
              "train_minutes": round(minutes, 1)}
    if variant == "store_k_all":
        for mode in ("shuffle", "zero"):
            result[f"accuracy_store_{mode}"] = accuracy(trainer.eval_model, task, recipe.task.eval, steps, examples, mode)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few updates per variant, to check the script")
    parser.add_argument("--updates", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="variants trained at once (one thread each)")
    args = parser.parse_args()
    updates = args.updates or (20 if args.quick else 3000)
    examples = 64 if args.quick else 1024
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = {v: pool.submit(run, v, updates, examples) for v in VARIANTS}
        results = {v: f.result() for v, f in futures.items()}
    recipe = recipe_for("store_k_all", updates)
    print(json.dumps({
        "benchmark": "memory_recall",
        "what": "delayed recall exact-match accuracy per number of facts (chance 1/16): [right after the "
                f"question (facts + 1 steps), after {max(recipe.eval.steps)} steps]; trained on "
                f"{list(recipe.task.train)} facts with {recipe.schedule.steps} steps",
        "updates": updates, "batch_size": recipe.train.batch_size, "eval_examples": examples,
        "results": results, "threads_per_variant": 1, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
