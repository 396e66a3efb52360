"""Truncated-backprop plans: how one unroll of thinking steps splits into windows with and without gradients.

A plan is a small registered function `(tbptt config, steps, rng) -> [Window, ...]`; the thinking loop
runs the windows in order and detaches every state between them, so no gradient crosses a boundary.
Plans are plain Python (no torch): `rng` is anything with `integer(lo, hi)` (inclusive) and `uniform()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Protocol


class Rng(Protocol):
    def integer(self, lo: int, hi: int) -> int: ...  # uniform in [lo, hi]
    def uniform(self) -> float: ...                   # uniform in [0, 1)


@dataclass(frozen=True)
class Window:
    """`steps` consecutive thinking steps, run with gradients or without. `fresh`: start the states anew
    before it (a second unroll of the same batch); `weight` scales its steps' losses."""

    steps: int
    grad: bool
    fresh: bool = False
    weight: float = 1.0


PlanFn = Callable[..., list[Window]]
PLANS: dict[str, PlanFn] = {}


def register_plan(name: str):
    """Decorator: make a plan usable as `train.tbptt.mode: name`."""

    def wrap(fn: PlanFn) -> PlanFn:
        PLANS[name] = fn
        return fn

    return wrap


@register_plan("full")
def full(cfg, steps: int, rng: Rng) -> list[Window]:
    """Every step in one gradient window (memory grows with steps)."""
    return [Window(steps, True)]


@register_plan("window")
def window(cfg, steps: int, rng: Rng) -> list[Window]:
    """Consecutive windows of `window` steps, detached between them: every step is supervised."""
    return [Window(min(cfg.window, steps - s), True) for s in range(0, steps, cfg.window)]


@register_plan("progressive")
def progressive(cfg, steps: int, rng: Rng) -> list[Window]:
    """DeepThinking's progressive loss: a random number of no-grad steps, then 1..window steps with gradients."""
    n_free = rng.integer(0, steps - 1)
    k = rng.integer(1, min(cfg.window, steps - n_free))
    return [Window(n_free, False), Window(k, True)] if n_free else [Window(k, True)]


@register_plan("last_k")
def last_k(cfg, steps: int, rng: Rng) -> list[Window]:
    """Huginn's recurrent-depth training: a random total depth r (log-normal Poisson around
    `mean_depth`, default `steps`), gradients through the last k = `window` of them only."""
    r = max(1, min(poisson_lognormal(cfg.mean_depth or steps, rng), 4 * steps))
    k = min(cfg.window, r)
    return [Window(r - k, False), Window(k, True)] if r > k else [Window(k, True)]


@register_plan("dtnet")
def dtnet(cfg, steps: int, rng: Rng) -> list[Window]:
    """DT-net's progressive loss: (1 - alpha) x the full unroll of `steps`, plus alpha x a fresh unroll of
    n ~ U[0, steps - 1] no-grad steps then k ~ U[1, steps - n] steps with gradients (both in one update)."""
    n = rng.integer(0, steps - 1)
    k = rng.integer(1, steps - n)
    second = [Window(n, False, fresh=True), Window(k, True, weight=cfg.alpha)] if n else \
        [Window(k, True, fresh=True, weight=cfg.alpha)]
    if cfg.alpha == 1:
        return [replace(second[0], fresh=False)] + second[1:]
    first = [Window(steps, True, weight=1 - cfg.alpha)]
    return first if cfg.alpha == 0 else first + second


def poisson_lognormal(mean: float, rng: Rng, sigma: float = 0.5) -> int:
    """r ~ Poisson(exp(tau)), tau ~ Normal(log(mean) - sigma^2 / 2, sigma): heavy-tailed, mean `mean`."""
    u1, u2 = max(rng.uniform(), 1e-12), rng.uniform()
    normal = math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)  # Box-Muller
    rate = math.exp(math.log(mean) - sigma**2 / 2 + sigma * normal)
    # Poisson by inversion of the CDF (rates here are tens at most)
    k, p, u = 0, math.exp(-rate), rng.uniform()
    cdf = p
    while u > cdf and k < 10 * mean + 100:
        k += 1
        p *= rate / k
        cdf += p
    return k


def step_weights(kind: str, graded: list[int]) -> dict[int, float]:
    """Loss weight of each step that has gradients (indices into the whole unroll), summing to 1."""
    if not graded:
        return {}
    raw = {"uniform": [1.0] * len(graded), "last": [0.0] * (len(graded) - 1) + [1.0],
           "increasing": [float(s + 1) for s in graded]}[kind]
    total = sum(raw)
    return {s: w / total for s, w in zip(graded, raw)}


def plan_weights(kind: str, plan: list[Window]) -> dict[int, float]:
    """Loss weight of each graded step of a plan: `step_weights` within each unroll (a `fresh` window
    starts a new one), times its window's `weight`."""
    out, start, unroll = {}, 0, []
    for w in plan + [Window(0, False, fresh=True)]:
        if w.fresh and unroll:
            steps = graded_steps(unroll)
            scale = [u.weight for u in unroll for _ in range(u.steps) if u.grad]
            base = sum(u.steps for u in unroll)
            weights = step_weights(kind, steps)
            out.update({start + s: weights[s] * f for s, f in zip(steps, scale)})
            start, unroll = start + base, []
        unroll.append(w)
    return out


def graded_steps(windows: list[Window]) -> list[int]:
    """The indices of the steps that run with gradients."""
    out, start = [], 0
    for w in windows:
        out += list(range(start, start + w.steps)) if w.grad else []
        start += w.steps
    return out
