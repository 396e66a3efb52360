"""Evaluation over thinking steps: exact-match accuracy per difficulty per number of steps."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from th1nker.errors import CheckpointError, DataError, RecipeError
from th1nker.halting import HaltRule, make_halt
from th1nker.loop import StepEnd, think
from th1nker.model import Th1nker
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.train.device import pick_device
from th1nker.train.speed import compile_blocks
from th1nker.train.checkpoint import load_model_weights
from th1nker.train.clean_memory import without_longterm

EVAL_SEED = 1234  # initial latents at evaluation: fixed, so evaluations are repeatable


@torch.no_grad()
def accuracy_by_steps(model: Th1nker, task, difficulties: list[int], steps: list[int],
                      batch_size: int = 256, halt: HaltRule | None = None) -> dict:
    """{"accuracy": {difficulty: {steps: acc}}, "compute": ..., "halting": ...} from one unroll per eval batch.

    Only what is reported is kept: the count of right answers at each evaluated step, when each example
    halted, its block calls, and the wall-clock seconds of the unrolls. `halt` defaults to the recipe's
    `eval.halt` rule."""
    model.eval()
    device = next(model.parameters()).device
    halt = halt if halt is not None else make_halt(model.recipe.eval.halt.rule, model.recipe.eval.halt.threshold)
    wanted, horizon = sorted(set(steps)), max(steps)
    accuracy, compute, halting = {}, {}, {}
    for d in difficulties:
        full = zeroed(task.eval_batch(d), model.recipe.eval.ablate)
        if model.recipe.eval.clean_memory:
            full = without_longterm(full)
        correct = dict.fromkeys(wanted, 0)
        halted_steps, calls, seconds = [], [], 0.0
        for lo in range(0, len(full), batch_size):
            batch = full.rows(lo, lo + batch_size).to(device)
            g = torch.Generator().manual_seed(EVAL_SEED + lo)
            halt_at = torch.full((len(batch),), horizon, device=device)
            pending, thought, start = list(wanted), None, time.perf_counter()
            for event in think(model, batch, steps=horizon, generator=g, halt=halt):
                if isinstance(event, StepEnd):
                    thought, s = event.thought, event.thought.step
                    halt_at = torch.where(thought.halted & (halt_at == horizon), torch.full_like(halt_at, s), halt_at)
                    while pending and pending[0] <= s:
                        correct[pending.pop(0)] += _score(model, task, thought, batch)
            seconds += time.perf_counter() - start
            right = _score(model, task, thought, batch) if pending else 0  # all halted: the answer stands
            for s in pending:
                correct[s] += right
            halted_steps.append(halt_at.float())
            calls.append(thought.calls.float())
        accuracy[str(d)] = {str(s): float(correct[s]) / len(full) for s in steps}  # host copies only here, after the unrolls
        compute[str(d)] = {"mean_block_calls": float(torch.cat(calls).mean()), "seconds": round(seconds, 4)}
        if model.recipe.schedule.kind in ("probe", "policy") or halt is not None:
            h = torch.cat(halted_steps)
            halting[str(d)] = {"mean_steps": float(h.mean()), "halted": float((h < horizon).float().mean())}
    result = {"accuracy": accuracy, "steps": steps, "compute": compute}
    if halting:
        result["halting"] = halting
    return result


def _score(model, task, thought, batch):
    """Right answers in the batch: a device tensor (no host sync per evaluated step), or 0."""
    pred = model.prediction(thought) if thought is not None else None
    return 0 if pred is None else task.score(pred, batch).sum()


def zeroed(batch, names: list[str]):
    """The batch with the inputs `names` replaced by zeros (eval.ablate: what does the model use?)."""
    from dataclasses import replace

    unknown = sorted(set(names) - set(batch.inputs))
    if unknown:
        raise DataError(f"eval.ablate: {unknown} not among this task's inputs {sorted(batch.inputs)}")
    return replace(batch, inputs={k: torch.zeros_like(v) if k in names else v for k, v in batch.inputs.items()})


def print_accuracy(result: dict, console: Console, title: str = "exact-match accuracy") -> None:
    acc = result["accuracy"]
    steps = [str(s) for s in result["steps"]]
    table = Table(title=f"{title} (rows: difficulty, columns: thinking steps)")
    table.add_column("difficulty", style="bold")
    for s in steps:
        table.add_column(s, justify="right")
    for d, row in acc.items():
        best = max(row.values())
        table.add_row(d, *[f"[green]{row[s]:.3f}[/green]" if row[s] == best and best > 0 else f"{row[s]:.3f}" for s in steps])
    console.print(table)
    for d, c in result.get("compute", {}).items():
        console.print(f"difficulty {d}: {c['mean_block_calls']:.1f} block calls per example, {c['seconds']:.2f} s of thinking")
    for d, h in result.get("halting", {}).items():
        console.print(f"difficulty {d}: halts after {h['mean_steps']:.1f} steps on average, {h['halted']:.0%} halted")


def plot_accuracy(result: dict, path: Path, train_steps: int | None = None) -> None:
    """eval.png: accuracy against thinking steps, one line per difficulty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from th1nker.io import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4))
    for d, row in result["accuracy"].items():
        xs = [int(s) for s in row]
        ax.plot(xs, list(row.values()), marker="o", label=f"difficulty {d}")
    if train_steps:
        ax.axvline(train_steps, color="grey", linestyle="--", linewidth=1, label="trained steps")
    ax.set_xlabel("thinking steps")
    ax.set_ylabel("exact-match accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def load_model(recipe_path: Path, checkpoint: Path | None, overrides: list[str], use_ema: bool = True):
    """(recipe, task, model) with the checkpoint's weights (its EMA when it kept one), on the recipe's
    `train.device` (auto: CUDA when there is one), compiled when the recipe says `eval.compile`."""
    recipe = load_recipe(recipe_path, overrides)
    task = make_task(recipe.task, recipe.seed)
    model = Th1nker(recipe, task.spec)
    if checkpoint is not None:
        model = load_model_weights(model, checkpoint, recipe.model_dump(mode="json"), use_ema)
    model.to(pick_device(recipe.train.device)).eval()
    if recipe.eval.compile:
        compile_blocks(model, "eval.compile")
    return recipe, task, model


def runnable_alone(recipe_path: Path, overrides: list[str]) -> None:
    """Refuse a recipe whose schedule needs an outside policy, before any checkpoint is read."""
    if load_recipe(recipe_path, overrides).schedule.kind == "policy":
        raise RecipeError(f"{recipe_path}: schedule.kind: 'policy' takes its decisions from an outside policy "
                          "(an RL environment); evaluate with kind fixed, random or probe (--set schedule.kind=probe)")


def evaluate_checkpoint(recipe_path: Path, checkpoint: Path, overrides: list[str], steps: list[int] | None) -> dict:
    runnable_alone(recipe_path, overrides)
    recipe, task, model = load_model(recipe_path, checkpoint, overrides)
    return accuracy_by_steps(model, task, recipe.task.eval, steps or recipe.eval.steps, recipe.eval.batch_size)


@torch.no_grad()
def think_one(recipe_path: Path, checkpoint: Path | None, text: str, steps: int | None, trace: bool,
              overrides: list[str], console: Console, speak: Path | None = None) -> dict:
    """Think on one example, printing the trace and the prediction after each step; with `speak`,
    write the speech block's answer there as a wav."""
    if checkpoint is None:
        raise CheckpointError("think needs --checkpoint: a run folder from `th1nker train` (untrained weights answer at random)")
    runnable_alone(recipe_path, overrides)
    recipe, task, model = load_model(recipe_path, checkpoint, overrides)
    batch = task.encode(text).to(next(model.parameters()).device)
    first_right, rows, n_trace, thought = None, [], 0, None
    for event in think(model, batch, steps=steps or recipe.schedule.steps, generator=torch.Generator().manual_seed(EVAL_SEED)):
        if not isinstance(event, StepEnd):
            continue
        thought = event.thought
        pred = model.prediction(thought)
        right = bool(task.score(pred, batch).all()) if pred is not None and (batch.target >= 0).any() else None
        if right and first_right is None:
            first_right = thought.step
        rows.append((thought.step, " -> ".join(thought.trace[n_trace:]), task.decode(pred[0].cpu()) if pred is not None else "", right))
        n_trace = len(thought.trace)
    if trace:
        table = Table(title=f"thinking on {text!r}")
        for col in ("step", "blocks", "prediction", "right"):
            table.add_column(col)
        for s, blocks, p, right in rows:
            table.add_row(str(s), blocks, p, "" if right is None else ("[green]yes" if right else "[red]no"))
        console.print(table)
    answer = rows[-1][2] if rows else ""
    console.print(f"answer after {rows[-1][0] if rows else 0} steps: [bold]{answer}[/bold]")
    if first_right is not None:
        console.print(f"first right at step {first_right}")
    result = {"answer": answer, "first_right": first_right, "steps": len(rows)}
    if speak is not None:
        from th1nker.blocks.speech import write_speech

        result["speech"] = said = write_speech(model, thought, speak)
        console.print(f"wrote {speak}: {said['frames']} frames, {said['seconds']:.2f} s at {said['sample_rate']} Hz")
    return result
