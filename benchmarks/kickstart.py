"""Kickstarting: does a bigger model reach a small trained model's accuracy in fewer updates when the
small one guides it (train.teacher) than when it learns alone?

Teacher: recipes/multistep.yaml at width 32, trained --teacher-updates updates. Students: the same
recipe at width 96, trained with and without the teacher (same seed, data and start), evaluated every
--every updates on 24-bit strings at the trained 20 steps (256 strings). Reports the updates each
student needs to reach the teacher's accuracy.

    python benchmarks/kickstart.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from th1nker.recipe import dump_recipe, load_recipe
from th1nker.tasks import make_task
from th1nker.train.evaluate import accuracy_by_steps
from th1nker.train.loop import Trainer

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "multistep.yaml"
COMMON = ["tracking.enabled=false", "train.ema=null", "task.eval=[24]", "eval.steps=[20]", "train.max_minutes=120"]


def accuracy(trainer: Trainer) -> float:
    r = accuracy_by_steps(trainer.eval_model, trainer.task, [24], [20])
    return r["accuracy"]["24"]["20"]


def curve(overrides: list[str], updates: int, every: int) -> tuple[list[tuple[int, float]], int, float]:
    recipe = load_recipe(RECIPE, COMMON + overrides + [f"train.max_updates={updates}"])
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    points, start = [], time.time()
    while trainer.update < updates:
        trainer.train_update()
        if trainer.update % every == 0:
            points.append((trainer.update, accuracy(trainer)))
    return points, sum(p.numel() for p in trainer.model.parameters()), (time.time() - start) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--teacher-updates", type=int, default=600)
    parser.add_argument("--student-updates", type=int, default=600)
    parser.add_argument("--every", type=int, default=50)
    args = parser.parse_args()
    if args.quick:
        args.teacher_updates, args.student_updates, args.every = 4, 4, 2
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(RECIPE, COMMON + ["model.dim=32", f"train.max_updates={args.teacher_updates}"])
        teacher = Trainer(recipe, make_task(recipe.task, recipe.seed))
        start = time.time()
        teacher.fit(Path(tmp))
        dump_recipe(recipe, Path(tmp) / "recipe.yaml")  # a run folder, as `th1nker train` leaves it
        teacher_minutes, target = (time.time() - start) / 60, accuracy(teacher)
        students = {}
        for name, extra in (("scratch", []), ("kickstarted", [f"train.teacher.run={tmp}"])):
            points, params, minutes = curve(["model.dim=96", *extra], args.student_updates, args.every)
            reached = next((u for u, a in points if a >= target), None)
            students[name] = {"parameters": params, "minutes": round(minutes, 2), "curve": points,
                              "updates_to_teacher_accuracy": reached}
    print(json.dumps({
        "benchmark": "kickstart", "recipe": RECIPE.name, "quick": args.quick,
        "teacher": {"dim": 32, "parameters": sum(p.numel() for p in teacher.model.parameters()),
                    "updates": args.teacher_updates, "minutes": round(teacher_minutes, 2),
                    "accuracy_24_bits_20_steps": target},
        "students": students, "student_dim": 96, "evaluated_every": args.every,
        "eval": "256 strings of 24 bits, 20 thinking steps, exact match",
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
