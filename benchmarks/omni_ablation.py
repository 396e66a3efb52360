"""Claim: `th1nker train recipes/omni.yaml` learns, on CPU within 10 minutes, to answer questions that need
both the image and the sound, and zeroing either input at evaluation drops accuracy.

Trains the shipped recipe as `th1nker train` does (one thread, as the recipe advises), then evaluates
the checkpoint as `th1nker eval` does with `eval.ablate` = [], [image], [audio], [image, audio].
Chance here is the best answer that knows only the question: the most frequent answer of each question
on the same evaluation set. Prints one JSON object.

    python benchmarks/omni_ablation.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "omni.yaml"
ABLATIONS = {"both": [], "no_image": ["image"], "no_audio": ["audio"], "neither": ["image", "audio"]}


def question_only_accuracy(task, difficulty: int) -> float:
    """Accuracy of answering each distinct question with its most frequent answer in the eval set."""
    batch = task.eval_batch(difficulty)
    answers = defaultdict(Counter)
    for question, target in zip(batch.inputs["text"].tolist(), batch.target.tolist()):
        answers[tuple(question)][target] += 1
    return sum(c.most_common(1)[0][1] for c in answers.values()) / len(batch.target)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a 60-update smoke run")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from th1nker.recipe import load_recipe
    from th1nker.tasks import make_task
    from th1nker.train.evaluate import evaluate_checkpoint
    from th1nker.train.run import train_recipe

    overrides = ["tracking.enabled=false"] + (["train.max_updates=60", "task.eval_examples=64"] if args.quick else [])
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        start = time.time()
        trained = train_recipe(RECIPE, overrides, run, resume=False, console=Console(stderr=True))
        wall = time.time() - start
        results = {name: evaluate_checkpoint(RECIPE, run, overrides + [f"eval.ablate=[{','.join(names)}]"], None)
                   ["accuracy"] for name, names in ABLATIONS.items()}
    recipe = load_recipe(RECIPE, overrides)
    task = make_task(recipe.task, recipe.seed)
    print(json.dumps({
        "benchmark": "omni_ablation",
        "recipe": "recipes/omni.yaml", "overrides": overrides,
        "train": {**trained["train"], "wall_minutes_with_eval": round(wall / 60, 2)},
        "question_only_chance": {str(d): question_only_accuracy(task, d) for d in recipe.task.eval},
        "accuracy": results,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} thread, torch {torch.__version__}",
    }))


if __name__ == "__main__":
    main()
