"""Task examples read from JSON-lines files (`task.data`), in the format `th1nker data prepare` writes.

Training draws each batch from the examples of one shape (a difficulty), chosen with the recipe's
generator, so the same files and seed give the same batches. An evaluation file is the whole fixed
evaluation set of its difficulty. What the files do not cover, the task still generates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from th1nker.errors import DataError
from th1nker.tasks.base import IGNORE, Batch, Task

FORMAT = ('one JSON object a line, {"difficulty": 8, "inputs": {"text": [0, 1, ...]}, "target": [0, 1, ...]} '
          '("masks" and "grid" optional), as `th1nker data prepare RECIPE --out DIR` writes it')


@dataclass
class Example:
    """One parsed line: its line number and its batch of one."""

    line: int
    batch: Batch

    def shape(self) -> tuple:
        """What examples must share to stack into one batch."""
        b = self.batch
        return (b.difficulty, b.grid, tuple((k, v.shape, v.dtype) for k, v in sorted(b.inputs.items())),
                tuple((k, v.shape) for k, v in sorted(b.masks.items())), b.target.shape, b.target.dtype)


def stack(examples: list[Example], path: Path, spec) -> Batch:
    """Examples of one shape as one batch, checked against the task's vocabulary and classes."""
    first = examples[0].batch
    batch = Batch({k: torch.cat([e.batch.inputs[k] for e in examples]) for k in first.inputs},
                  torch.cat([e.batch.target for e in examples]),
                  {k: torch.cat([e.batch.masks[k] for e in examples]) for k in first.masks},
                  first.grid, first.difficulty)
    ids, target = batch.inputs.get("text"), batch.target
    line = ids is not None and not ids.is_floating_point() and first_bad(examples, (ids < 0) | (ids >= spec.vocab))
    if line:
        raise DataError(f"{path}, line {line}: inputs.text holds ids outside [0, {spec.vocab}), this task's "
                        "vocabulary; was the file written for another task?")
    unknown_label = (target != IGNORE) & ((target < 0) | (target >= spec.classes))
    line = not target.is_floating_point() and first_bad(examples, unknown_label)
    if line:
        raise DataError(f"{path}, line {line}: target holds labels outside [0, {spec.classes}) (or {IGNORE} = "
                        "unscored), this task's classes; was the file written for another task?")
    return batch


def first_bad(examples: list[Example], bad: torch.Tensor) -> int | None:
    """The line of the first example with a bad value (`bad`: one row per example), or None."""
    rows = bad.flatten(1).any(1).nonzero()
    return examples[int(rows[0])].line if len(rows) else None


def select(batch: Batch, index) -> Batch:
    """The examples `index` (a slice or a tensor of rows) of a batch."""
    return replace(batch, inputs={k: v[index] for k, v in batch.inputs.items()}, target=batch.target[index],
                   masks={k: v[index] for k, v in batch.masks.items()})


def tensor(value, path: Path, line: int, field: str) -> torch.Tensor:
    try:
        t = torch.tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"{path}, line {line}: '{field}' is not a rectangular array of numbers; "
                        f"expected {FORMAT}") from None
    if t.dim() == 0 or t.numel() == 0:
        raise DataError(f"{path}, line {line}: '{field}' must be a non-empty list; expected {FORMAT}")
    return t.unsqueeze(0)


def parse(text: str, path: Path, line: int) -> Example:
    """One line as an Example."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {line}: not valid JSON ({e.msg}); expected {FORMAT}") from None
    if not isinstance(row, dict) or not isinstance(row.get("inputs"), dict) or not row["inputs"] or "target" not in row:
        raise DataError(f"{path}, line {line}: needs 'inputs' (modality -> values) and 'target'; expected {FORMAT}")
    difficulty = row.get("difficulty")
    if not isinstance(difficulty, int):
        raise DataError(f"{path}, line {line}: 'difficulty' must be a whole number; expected {FORMAT}")
    inputs = {k: tensor(v, path, line, f"inputs.{k}") for k, v in row["inputs"].items()}
    masks = {k: tensor(v, path, line, f"masks.{k}").bool() for k, v in (row.get("masks") or {}).items()}
    target = tensor(row["target"], path, line, "target")
    grid = tuple(row["grid"]) if row.get("grid") else None
    return Example(line, Batch(inputs, target, masks, grid, difficulty))


def read_examples(path: str | Path) -> list[Example]:
    """Every example of a JSON-lines file, in order; a DataError names the file, the line and the fix."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: data file not found; write it with `th1nker data prepare RECIPE --out "
                        f"{path.parent}` or fix task.data in the recipe") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the data file ({e}); task.data needs {FORMAT}") from None
    examples = [parse(text, path, n) for n, text in enumerate(lines, 1) if text.strip()]
    if not examples:
        raise DataError(f"{path}: no examples; task.data needs {FORMAT}")
    return examples


def eval_set(path: str, difficulty: int, spec) -> Batch:
    """The evaluation set of one difficulty: every example of the file, which must share one shape."""
    examples = read_examples(path)
    for e in examples:
        if e.batch.difficulty != difficulty:
            raise DataError(f"{path}, line {e.line}: difficulty {e.batch.difficulty}, but task.data.eval names "
                            f"this file for difficulty {difficulty}; fix the line or the recipe")
        if e.shape() != examples[0].shape():
            raise DataError(f"{path}, line {e.line}: shaped unlike line {examples[0].line}; the examples of "
                            "one evaluation set must share their sizes")
    return stack(examples, Path(path), spec)


class FileTask(Task):
    """A task whose training and/or evaluation examples come from files; the rest is the task's own."""

    def __init__(self, task: Task, data):
        super().__init__(task.config, task.seed)
        self.task, self.name, self.spec, self.tokenizer = task, task.name, task.spec, task.tokenizer
        unknown = sorted(set(data.eval) - set(task.config.eval))
        if unknown:
            raise DataError(f"task.data.eval names difficulties {unknown} that task.eval {task.config.eval} does not "
                            "evaluate; add them to task.eval or drop their files")
        self.eval_sets = {d: eval_set(path, d, self.spec) for d, path in data.eval.items()}
        self.train_groups: list[Batch] = []
        if data.train:
            groups: dict[tuple, list[Example]] = {}
            for e in read_examples(data.train):
                groups.setdefault(e.shape(), []).append(e)
            self.train_groups = [stack(g, Path(data.train), self.spec) for g in groups.values()]

    def __getattr__(self, name: str):  # the wrapped task's own attributes (vocabularies, paths, ...)
        if name == "task":
            raise AttributeError(name)
        return getattr(self.task, name)

    def train_batch(self, n: int, generator: torch.Generator) -> Batch:
        """`n` examples of one shape: a random example picks the shape, the rest are drawn from its group."""
        if not self.train_groups:
            return self.task.train_batch(n, generator)
        sizes = torch.tensor([len(g) for g in self.train_groups])
        pick = int(torch.randint(int(sizes.sum()), (1,), generator=generator))
        group = self.train_groups[int(torch.searchsorted(sizes.cumsum(0), pick, right=True))]
        return select(group, torch.randint(len(group), (n,), generator=generator))

    def eval_batch(self, difficulty: int, n: int | None = None) -> Batch:
        """The file's evaluation set (its first `n` examples when `n` is given), else the generated one."""
        if difficulty not in self.eval_sets:
            return self.task.eval_batch(difficulty, n)
        full = self.eval_sets[difficulty]
        return full if n is None else select(full, slice(0, n))

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        return self.task.batch(n, difficulty, generator)

    def score(self, prediction, batch: Batch):
        return self.task.score(prediction, batch)

    def encode(self, text: str) -> Batch:
        return self.task.encode(text)

    def decode(self, prediction) -> str:
        return self.task.decode(prediction)
