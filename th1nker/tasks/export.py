"""Files for pipelines: a task's data as JSON lines, and accuracy per thinking step as CSV tables.

`export_task` writes the fixed evaluation sets (the very examples `th1nker eval` scores, drawn from the
recipe's seed) and a seeded sample of training examples. Each output folder is written beside its
target and renamed into place, so a crash never leaves a half-written folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

from th1nker.errors import DataError
from th1nker.io import atomic_write_json, atomic_write_text
from th1nker.tasks.base import Batch, Task

MANIFEST = "manifest.json"


def batch_rows(batch: Batch) -> list[dict]:
    """One JSON-ready dict per example: difficulty, inputs (and masks) per modality, target, grid."""
    rows = []
    for i in range(len(batch)):
        row = {"difficulty": batch.difficulty,
               "inputs": {k: v[i].tolist() for k, v in batch.inputs.items()},
               "target": batch.target[i].tolist()}
        if batch.masks:
            row["masks"] = {k: v[i].tolist() for k, v in batch.masks.items()}
        if batch.grid is not None:
            row["grid"] = list(batch.grid)
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows))


def export_task(task: Task, out: Path, train_examples: int) -> dict:
    """Write eval_<difficulty>.jsonl per evaluated difficulty, train.jsonl and manifest.json into `out`.

    train.jsonl holds `train_examples` examples, each at a training difficulty drawn from the seed.
    """

    def write(folder: Path) -> dict:
        counts = {}
        for d in task.config.eval:
            rows = batch_rows(task.eval_batch(d))
            write_jsonl(folder / f"eval_{d}.jsonl", rows)
            counts[f"eval_{d}.jsonl"] = len(rows)
        g = torch.Generator().manual_seed(task.seed)
        rows = [row for _ in range(train_examples) for row in batch_rows(task.train_batch(1, g))]
        write_jsonl(folder / "train.jsonl", rows)
        counts["train.jsonl"] = len(rows)
        manifest = {"task": task.config.model_dump(mode="json"), "seed": task.seed, "examples": counts}
        atomic_write_json(folder / MANIFEST, manifest)
        return manifest

    return replace_folder(Path(out), lambda names: MANIFEST in names, write)


def export_accuracy(result: dict, out: Path, source: str = "result") -> list[Path]:
    """difficulty_<d>.csv per difficulty of a `th1nker eval --json` result: columns steps, accuracy."""
    try:
        tables = {d: sorted((int(s), float(a)) for s, a in row.items()) for d, row in result["accuracy"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        tables = {}
    if not tables:
        raise DataError(f"{source}: expected the output of `th1nker eval --json`, an object whose 'accuracy' maps "
                        "difficulty -> {steps: accuracy}")

    def write(folder: Path) -> list[Path]:
        for d, rows in tables.items():
            lines = [("steps", "accuracy"), *rows]
            atomic_write_text(folder / f"difficulty_{d}.csv", "".join(f"{s},{acc}\n" for s, acc in lines))
        return [Path(out) / f"difficulty_{d}.csv" for d in tables]

    def ours(names: list[str]) -> bool:
        return all(n.startswith("difficulty_") and n.endswith(".csv") for n in names)

    return replace_folder(Path(out), ours, write)


def replace_folder(out: Path, ours: Callable[[list[str]], bool], write: Callable[[Path], object]):
    """Fill a new folder with `write(tmp)`, then put it in place of `out`.

    `out` must be missing, an empty folder, or a folder whose file names `ours` recognises as ours.
    """
    names = [p.name for p in out.iterdir()] if out.is_dir() else None
    if out.exists() and (names is None or names and not ours(names)):
        raise DataError(f"{out} exists and was not written by `th1nker data`; pass a new or empty folder as --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        tmp.chmod(0o755)
        result = write(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result
