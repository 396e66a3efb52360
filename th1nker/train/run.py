"""`th1nker train`: a run folder, an MLflow run, training with a progress bar, final evaluation.

Under torchrun every rank trains and evaluates; rank 0 alone prints, logs to MLflow and writes the run folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from th1nker.errors import CheckpointError, TrainingDiverged
from th1nker.graph import BlockGraph
from th1nker.io import atomic_write, atomic_write_json, atomic_write_text
from th1nker.recipe import dump_recipe, load_recipe
from th1nker.tasks import make_task
from th1nker.train import distributed
from th1nker.train.checkpoint import has_checkpoint, latest_checkpoint, resume_point
from th1nker.train.evaluate import accuracy_by_steps, plot_accuracy, print_accuracy
from th1nker.train.loop import Trainer
from th1nker.train.tracking import Tracker, accuracy_metrics, accuracy_table, git_tags


def run_folder(name: str, out: Path | None, resume: bool) -> Path:
    """--out, or runs/<name>/<timestamp>; with --resume and no --out, the newest run of that name."""
    if out is not None:
        return Path(out)
    root = Path("runs") / name
    if resume:
        runs = sorted(p for p in root.glob("*") if has_checkpoint(p))
        if not runs:
            raise CheckpointError(f"--resume: no earlier run of '{name}' with a checkpoint under {root}/; pass --out")
        return runs[-1]
    return root / time.strftime("%Y%m%d-%H%M%S")


def resume_from(trainer: Trainer, run_dir: Path, console: Console) -> dict:
    """Restore the trainer from the run's newest intact checkpoint (one line says so when `latest` is not it)."""
    ckpt, fallback = resume_point(run_dir)
    if fallback:
        console.print(fallback, soft_wrap=True, markup=False)
    return trainer.load(ckpt)


def last_good(run_dir: Path) -> str:
    """Where a diverged run's last finite weights are, and what to do next."""
    ckpt = latest_checkpoint(run_dir)
    where = (f"skipped updates keep the weights, so the last good checkpoint is {ckpt}" if ckpt else
             "no checkpoint was saved before it diverged")
    return f"{where}; lower train.optimizer.lr or set train.grad_clip, then start a new run"


def save_tokenizer(task, run_dir: Path) -> dict:
    """Keep the task's sentencepiece model in the run folder; returns the state.json entry naming it."""
    if task.tokenizer is None:
        return {}
    atomic_write(run_dir / "tokenizer.model", lambda tmp: tmp.write_bytes(task.tokenizer.to_bytes()))
    return {"tokenizer": "tokenizer.model"}


def data_files(recipe) -> list[tuple[str, str]]:
    """The files the task reads its examples from, each with its MLflow context (training or evaluation)."""
    data = recipe.task.data
    if data is None:
        return []
    files = [(data.train, "training")] if data.train else []
    return files + [(path, "evaluation") for path in data.eval.values()]


def train_recipe(recipe_path: Path, overrides: list[str], out: Path | None, resume: bool,
                 console: Console | None = None) -> dict:
    """Train, evaluate and record a recipe: in this process, or as one rank of a torchrun job."""
    try:
        return _train(recipe_path, overrides, out, resume, console)
    finally:
        distributed.teardown()


def _train(recipe_path: Path, overrides: list[str], out: Path | None, resume: bool, console: Console | None) -> dict:
    main = distributed.is_main()
    console = console or Console(quiet=not main)
    recipe = load_recipe(recipe_path, overrides)
    task = make_task(recipe.task, recipe.seed)
    trainer = Trainer(recipe, task)  # under torchrun this joins the process group
    run_dir = distributed.broadcast_object(run_folder(recipe.name, out, resume))  # named by rank 0's clock
    has_ckpt = has_checkpoint(run_dir)
    if resume and not has_ckpt:
        raise CheckpointError(f"--resume: {run_dir} has no checkpoint yet; drop --resume to start a new run")
    if has_ckpt and not resume:
        raise CheckpointError(f"{run_dir} already holds a run; add --resume to continue it or pick another --out")
    state = resume_from(trainer, run_dir, console) if resume else {}

    kept = {}  # files beside the checkpoints that state.json names
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_recipe(recipe, run_dir / "recipe.yaml")
        kept = save_tokenizer(task, run_dir)
        graph = BlockGraph(recipe)
        atomic_write_text(run_dir / "graph.mmd", graph.to_mermaid() + "\n")
        graph.draw(run_dir / "graph.png")

    tracker = Tracker(recipe.tracking.enabled and main, recipe.tracking.uri, recipe.tracking.experiment)
    recipe_file = Path(recipe_path).resolve()
    tags = {**git_tags(recipe_file.parent), "recipe": str(recipe_file), "run_dir": str(run_dir.resolve()),
            "dvc_exp": os.environ.get("DVC_EXP_NAME")}
    tracker.start(f"{recipe.name}-{run_dir.name}", recipe.model_dump(mode="json"), tags, state.get("mlflow_run_id"))
    if state.get("mlflow_run_id") is None:  # a new MLflow run: link it to the data files it reads
        for path, context in data_files(recipe):
            tracker.dataset(path, context)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    console.print(f"[bold]{recipe.name}[/bold]: {n_params:,} parameters on {trainer.device}, "
                  f"{recipe.schedule.steps} steps of {recipe.schedule.describe()}, tbptt {recipe.train.tbptt.mode}; "
                  f"run folder {run_dir}" + (f", resuming at update {trainer.update}" if resume else ""))
    columns = (TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn())
    try:
        quiet = not main or not console.is_terminal and os.environ.get("CI") == "true"
        with Progress(*columns, console=console, transient=False, disable=quiet) as progress:
            summary = trainer.fit(run_dir, tracker, progress, {"mlflow_run_id": tracker.run_id, **kept})
    except TrainingDiverged as e:
        tracker.end("FAILED")
        raise TrainingDiverged(f"{e}; {last_good(run_dir)}") from None
    except BaseException:
        tracker.end("KILLED")
        raise

    console.print(f"trained {summary['updates']} updates in {summary['minutes']:.1f} min "
                  f"({summary['skipped_updates']} skipped); evaluating {recipe.task.eval} at steps {recipe.eval.steps}")
    # every rank evaluates (an FSDP forward needs them all); the results agree, rank 0 records them
    result = accuracy_by_steps(trainer.eval_model, task, recipe.task.eval, recipe.eval.steps, recipe.eval.batch_size)
    result["train"] = summary
    if not main:
        return result
    atomic_write_json(run_dir / "metrics.json", result)
    plot_accuracy(result, run_dir / "eval.png", recipe.schedule.steps)
    print_accuracy(result, console)
    final = {"updates": summary["updates"], "final_loss": summary["final_loss"], **accuracy_metrics(result["accuracy"])}
    tracker.metrics({k: v for k, v in final.items() if v is not None}, step=summary["updates"])  # step = update
    tracker.table(accuracy_table(result["accuracy"]), "eval_accuracy.json")
    for path in ("recipe.yaml", "metrics.json", "eval.png", "graph.png", "graph.mmd", *kept.values()):
        tracker.artifact(run_dir / path)
    tracker.artifact(latest_checkpoint(run_dir), "checkpoint")
    tracker.end()
    console.print(f"run folder: {run_dir}" + (f"; MLflow run {tracker.run_id} at {tracker.uri}" if tracker.run_id else ""))
    if tracker.run_id:
        console.print(f"see it: {tracker.ui_link()}", soft_wrap=True)
    return result
