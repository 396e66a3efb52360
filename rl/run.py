"""`th1nker rl`: a run folder, an MLflow run, RL on the probe with a progress bar, the final comparison."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from th1nker.errors import CheckpointError
from th1nker.io import atomic_write_json
from th1nker.recipe import dump_recipe
from th1nker.rl.compare import compare_policies
from th1nker.rl.read_trainer import ReadChoiceTrainer, compare_reads
from th1nker.rl.trainer import RLTrainer
from th1nker.train.evaluate import load_model
from th1nker.train.device import pick_device
from th1nker.train.tracking import Tracker, git_tags


def rl_recipe(recipe_path: Path, checkpoint: Path, overrides: list[str], out: Path | None,
              console: Console | None = None) -> dict:
    """Train the probe of a supervised checkpoint by RL; write checkpoints/, recipe.yaml and metrics.json."""
    console = console or Console()
    recipe, task, model = load_model(recipe_path, checkpoint, overrides)
    run_dir = Path(out) if out is not None else Path("runs") / recipe.name / f"rl-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / "checkpoints" / "latest").exists():
        raise CheckpointError(f"{run_dir} already holds a run; pick another --out")
    reads = recipe.rl is not None and recipe.rl.policy == "reads"
    trainer = (ReadChoiceTrainer if reads else RLTrainer)(model.to(pick_device(recipe.train.device)), task)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_recipe(recipe, run_dir / "recipe.yaml")
    tracker = Tracker(recipe.tracking.enabled, recipe.tracking.uri, recipe.tracking.experiment)
    tags = {**git_tags(Path(recipe_path).resolve().parent), "recipe": str(recipe_path), "run_dir": str(run_dir),
            "checkpoint": str(checkpoint), "stage": "rl"}
    tracker.start(f"{recipe.name}-{run_dir.name}", recipe.model_dump(mode="json"), tags)
    rl = trainer.rl
    learner = f"the choosers of {sorted(trainer.blocks)}" if reads else f"probe '{recipe.schedule.probe}'"
    console.print(f"[bold]{recipe.name}[/bold]: RL ({rl.algorithm}, reward {rl.reward}) on {learner} from "
                  f"{checkpoint}; {rl.updates} updates of {rl.episodes} episodes; run folder {run_dir}")
    columns = (TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("return {task.fields[ret]:.3f}"), TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, disable=not console.is_terminal and os.environ.get("CI") == "true") as progress:
            summary = trainer.fit(run_dir, tracker, progress)
    except BaseException:
        tracker.end("KILLED")
        raise
    if reads:
        result = compare_reads(trainer.model, task, recipe.task.eval, recipe.eval.batch_size)
        print_read_comparison(result, console)
        summary_metrics = {f"{arm}_{k}": v for arm, s in result["summary"].items() for k, v in s.items()}
    else:
        result = compare_policies(trainer.model, task, recipe.task.eval, recipe.eval.batch_size)
        print_comparison(result, console)
        summary_metrics = result["summary"]
    result["rl"] = summary
    atomic_write_json(run_dir / "metrics.json", result)
    tracker.metrics({f"eval_{k}": v for k, v in summary_metrics.items()}, step=trainer.update)
    for path in ("recipe.yaml", "metrics.json"):
        tracker.artifact(run_dir / path)
    tracker.end()
    console.print(f"run folder: {run_dir}" + (f"; MLflow run {tracker.run_id} at {tracker.uri}" if tracker.run_id else ""))
    return result


def print_comparison(result: dict, console: Console) -> None:
    table = Table(title="fixed schedule vs learned policy (accuracy / mean compute / mean steps)")
    for col in ("difficulty", "fixed", "policy"):
        table.add_column(col, justify="right")
    for d in result["fixed"]:
        f, p = result["fixed"][d], result["policy"][d]
        table.add_row(d, *[f"{r['accuracy']:.3f} / {r['compute']:.1f} / {r['steps']:.1f}" for r in (f, p)])
    console.print(table)
    s = result["summary"]
    console.print(f"mean accuracy {s['accuracy_fixed']:.3f} fixed, {s['accuracy_policy']:.3f} policy; "
                  f"the policy spends {s['compute_ratio']:.0%} of the fixed schedule's compute")


def print_read_comparison(result: dict, console: Console) -> None:
    arms = [a for a in result if a != "summary"]
    table = Table(title="what each read takes (accuracy / blocks or parts read per example)")
    table.add_column("difficulty", justify="right")
    for arm in arms:
        table.add_column(arm, justify="right")
    for d in result[arms[0]]:
        table.add_row(d, *[f"{result[a][d]['accuracy']:.3f} / {result[a][d]['blocks_read']:.1f}" for a in arms])
    console.print(table)
