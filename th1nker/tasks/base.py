"""What a task is: it makes batches at a difficulty from a seed and scores predictions exactly."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

IGNORE = -100  # target value at positions that are not scored


@dataclass
class Batch:
    """Inputs per modality and the target of one batch.

    inputs: modality -> ids (B, S) for text, or features; masks: modality -> (B, S) bool, True = real.
    target: (B, T) per-position labels with IGNORE where unscored, or (B,) class labels.
    grid: the (H, W) layout of the text tokens when they form a 2-D grid (maze), else None.
    """

    inputs: dict[str, Tensor]
    target: Tensor
    masks: dict[str, Tensor] = field(default_factory=dict)
    grid: tuple[int, int] | None = None
    difficulty: int | None = None

    def to(self, device) -> "Batch":
        return replace(self, inputs={k: v.to(device) for k, v in self.inputs.items()},
                       target=self.target.to(device), masks={k: v.to(device) for k, v in self.masks.items()})

    def rows(self, lo: int, hi: int) -> "Batch":
        """Examples lo..hi-1 of this batch (evaluation walks a large batch in chunks)."""
        return replace(self, inputs={k: v[lo:hi] for k, v in self.inputs.items()}, target=self.target[lo:hi],
                       masks={k: v[lo:hi] for k, v in self.masks.items()})

    def __len__(self) -> int:
        return self.target.shape[0]


@dataclass(frozen=True)
class TaskSpec:
    """What a model needs to know to be built for a task."""

    vocab: int                 # text input ids lie in [0, vocab)
    classes: int               # target labels lie in [0, classes)
    target: str = "tokens"     # "tokens" (per position) or "class" (one label per example)


class Task(ABC):
    """A generated or loaded task. Subclasses register with @register_task("name")."""

    name: str = ""
    spec: TaskSpec
    tokenizer = None  # the sentencepiece Tokenizer of the task's text, if any (kept with checkpoints)

    def __init__(self, config, seed: int = 0):
        self.config = config
        self.seed = seed

    @abstractmethod
    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        """`n` examples at `difficulty`, drawn with `generator`."""

    def sample_difficulty(self, generator: torch.Generator) -> int:
        lo, hi = self.config.train
        return int(torch.randint(lo, hi + 1, (1,), generator=generator))

    def train_batch(self, n: int, generator: torch.Generator) -> Batch:
        return self.batch(n, self.sample_difficulty(generator), generator)

    def eval_batch(self, difficulty: int, n: int | None = None) -> Batch:
        """The fixed evaluation set at `difficulty` (same seed -> same examples)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + difficulty + 7)
        return self.batch(n or self.config.eval_examples, difficulty, g)

    def score(self, prediction: Tensor, batch: Batch) -> Tensor:
        """Exact match per example: (B,) bool. `prediction` has the target's shape, or (decoders that
        choose their own length) as many positions as they decoded: the target's scored positions decide."""
        target = batch.target
        if target.dim() == 1:
            return prediction == target
        if prediction.shape[1] != target.shape[1]:
            missing = prediction.new_full((len(target), max(0, target.shape[1] - prediction.shape[1])), IGNORE)
            prediction = torch.cat([prediction, missing], dim=1)[:, :target.shape[1]]
        scored = target != IGNORE
        return ((prediction == target) | ~scored).all(dim=1)

    @abstractmethod
    def encode(self, text: str) -> Batch:
        """One example from the text a user types (`th1nker think --input`); target may be IGNORE."""

    @abstractmethod
    def decode(self, prediction: Tensor) -> str:
        """A human-readable string for one example's prediction."""
