"""Truncated backprop through thinking steps: which steps run with gradients, and their losses."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from th1nker.recipe import TrainConfig
from th1nker.tasks.base import Batch
from th1nker.thought import Thought


def window_plan(mode: str, window: int, steps: int, generator: torch.Generator) -> list[tuple[int, bool]]:
    """[(n_steps, with_grad), ...] covering one unroll.

    full: every step in one gradient window. window: consecutive windows of `window` steps, detached
    between them. progressive: a random number of no-grad steps, then a random-length gradient window.
    """
    if mode == "full":
        return [(steps, True)]
    if mode == "window":
        return [(min(window, steps - s), True) for s in range(0, steps, window)]
    n_free = int(torch.randint(0, steps, (1,), generator=generator))
    k = int(torch.randint(1, min(window, steps - n_free) + 1, (1,), generator=generator))
    return [(n_free, False), (k, True)] if n_free else [(k, True)]


def step_weights(kind: str, steps: list[int]) -> list[float]:
    """Loss weight of each supervised step (indices into the whole unroll), summing to 1."""
    raw = {"uniform": [1.0] * len(steps), "last": [0.0] * (len(steps) - 1) + [1.0],
           "increasing": [float(s + 1) for s in steps]}[kind]
    total = sum(raw)
    return [w / total for w in raw]


def step_loss(model, thought: Thought, batch: Batch) -> Tensor:
    """Sum of the losses of the outputs produced at the step that just ended."""
    losses = [model.blocks[o.block].loss(o.logits, batch.target) for o in thought.step_outputs(thought.step - 1)]
    return torch.stack(losses).sum() if losses else thought.latent.new_zeros(())


def unroll(model, batch: Batch, schedule, cfg: TrainConfig, steps: int, generator: torch.Generator,
           noise: float = 0.0) -> Iterator[tuple[Tensor, dict[int, Tensor]]]:
    """Think for `steps` steps from a random latent, yielding (weighted loss, {step: loss}) once per
    gradient window. The caller backpropagates each window before asking for the next, so memory
    holds one window at a time; no gradient crosses a window boundary. Blocks may add auxiliary
    losses to the window's loss as `thought.aux["loss/<name>"]` (e.g. the long-term indexer's KL)."""
    plan = window_plan(cfg.tbptt.mode, cfg.tbptt.window, steps, generator)
    graded, start = [], 0
    for n, grad in plan:
        graded += list(range(start, start + n)) if grad else []
        start += n
    weights = iter(step_weights(cfg.loss_weights, graded))
    thought = model.start(batch, generator)
    start, backpropagated = 0, False
    for n, grad in plan:
        thought.detach()
        with torch.set_grad_enabled(grad):
            if grad and backpropagated:  # a backward freed the encoders' graph: build a fresh one
                thought.inputs = model.encode(batch)
            losses = []
            for _ in range(n):
                if noise:
                    thought.latent = thought.latent + noise * torch.randn(
                        thought.latent.shape, generator=generator).to(thought.latent.device)
                thought = model.step(thought, schedule)
                if grad:
                    losses.append(step_loss(model, thought, batch))
        if grad:
            extra = sum(v for k, v in thought.aux.items() if k.startswith("loss/"))
            yield sum(w * l for w, l in zip(weights, losses)) + extra, dict(zip(range(start, start + n), losses))
            backpropagated = True
        start += n
