"""The thinking loop, written once: training (every TBPTT plan), evaluation, `think`, the memory CLI and
the RL environments all drive `think`, a generator of events.

    StepEnd(thought)                      after every thinking step
    WindowEnd(thought, loss, ...)         at the end of every gradient window: backpropagate `loss` now
    Decide(thought, mask) -> actions      when a policy schedule asks its caller for the next blocks
"""

from __future__ import annotations

from typing import Generator

import torch
from torch import Tensor

from th1nker.errors import RecipeError
from th1nker.events import Decide, Event, StepEnd, WindowEnd
from th1nker.halting import HaltRule
from th1nker.plans import Window, plan_weights
from th1nker.schedule import Schedule, make_schedule
from th1nker.tasks.base import Batch
from th1nker.thought import Output, Thought, WindowState

__all__ = ["think", "run_to_end", "StepEnd", "WindowEnd", "Decide", "Event"]


def think(model, batch: Batch, schedule: Schedule | None = None, steps: int | None = None, *,
          plan: list[Window] | None = None, loss_weights: str = "uniform", noise: bool = False,
          generator: torch.Generator | None = None, thought: Thought | None = None,
          halt: HaltRule | None = None) -> Generator[Event, object, Thought]:
    """Think on `batch` for `steps` steps (or the windows of `plan`), yielding events; returns the Thought.

    Without a plan every step runs in one window, with gradients only if they are enabled. With one (training),
    a window without gradients computes no outputs, as nothing reads them (`Thought.outputs_wanted`). Between
    windows every state is detached and the window's losses and caches are dropped: no gradient
    crosses a boundary. `noise` adds each state's recipe noise before every step (training). `halt`
    stops examples after a step (th1nker.halting); halted examples cost nothing afterwards.
    """
    schedule = schedule or make_schedule(model.recipe.schedule, model, generator)
    training = plan is not None  # a plan's windows without gradients feed only the states of later ones
    plan = plan or [Window(steps or model.recipe.schedule.steps, torch.is_grad_enabled())]
    weights = plan_weights(loss_weights, plan)
    thought = thought or model.start(batch, generator)
    halts = schedule.halts or halt is not None
    horizon = sum(w.steps for w in plan)
    backpropagated, t, previous = False, 0, None  # t: steps taken in this unroll
    for window in plan:
        thought = model.start(batch, generator) if window.fresh else thought.end_window()
        if window.grad and backpropagated:  # the last backward freed the encoders' graph: build a fresh one
            thought.inputs = model.encode(batch)
        losses: dict[int, Tensor] = {}
        thought.outputs_wanted = window.grad or not training or halts
        for _ in range(window.steps):
            thought.outputs = []
            if noise:
                with torch.set_grad_enabled(window.grad):
                    add_noise(model, thought, generator)
            yield from _in_grad_mode(schedule.step(model, thought), window.grad)
            with torch.set_grad_enabled(window.grad):
                thought.store.append(thought.states[model.default_state], thought.step)
                if window.grad and model.q_halting:
                    bootstrap_q(model, schedule, thought, last=t == horizon - 1)
                if window.grad:  # a step weighted zero is logged but not backpropagated through
                    with torch.set_grad_enabled(weights.get(t, 0.0) > 0):
                        losses[t] = model.step_loss(thought, batch)
            thought.step, t = thought.step + 1, t + 1
            previous = _apply_halt(thought, halt, previous) if halts else None
            yield StepEnd(thought)
            if halts and bool(thought.halted.all()):
                break
        if window.grad:
            aux = thought.window.aux_losses()
            loss = sum(weights[s] * loss for s, loss in losses.items()) + sum(w * v for w, v in aux.values())
            yield WindowEnd(thought, loss, losses, {name: v for name, (_, v) in aux.items()})
            backpropagated = True
        if halts and bool(thought.halted.all()):
            break
    return thought


def bootstrap_q(model, schedule: Schedule, thought: Thought, last: bool) -> None:
    """HRM's Q-learning target for this step's continue values: the next step, run ahead on a copy without
    gradient; the sigmoid of its max(Q halt, Q continue), or of its Q halt alone after the last step."""
    ahead = thought.select(torch.arange(len(thought.cost), device=thought.cost.device))
    ahead.window = WindowState()  # nothing it computes joins this window's losses
    with torch.no_grad():
        for _ in schedule.step(model, ahead):
            raise RecipeError("a Q-halting head (halt_mode: q) needs a schedule that runs without a caller's "
                              "decisions in training: fixed, random or probe")
        for out in thought.outputs:
            nxt = ahead.latest.get(out.block)
            if out.halt is not None and out.halt.dim() == 2 and nxt is not None:
                q = nxt.halt.float()
                out.q_next = torch.sigmoid(q[:, 0] if last else q.amax(-1))


def _apply_halt(thought: Thought, halt: HaltRule | None, previous: Output | None) -> Output | None:
    """Stop the examples the rule says are done; returns the output the rule compares with next step."""
    if halt is not None and thought.last_block is not None:
        out = thought.latest[thought.last_block].detached()
        thought.halted = thought.halted | halt(out, previous)
        previous = out
    thought.all_live = not bool(thought.halted.any())  # one host sync per step
    return previous


def _in_grad_mode(events: Generator, grad: bool) -> Generator:
    """Run a schedule's step with gradients on or off, but never hold that mode while the caller runs."""
    reply = None
    while True:
        with torch.set_grad_enabled(grad):
            try:
                event = events.send(reply)
            except StopIteration:
                return
        reply = yield event


def add_noise(model, thought: Thought, generator: torch.Generator | None) -> None:
    """Each state plus Gaussian noise of its recipe's `noise` std (a latent that tolerates drift)."""
    for name, cfg in model.recipe.model.states.items():
        if cfg.noise:
            x = thought.states[name]
            thought.states[name] = x + cfg.noise * torch.randn(x.shape, generator=generator).to(x.device)


def run_to_end(model, batch: Batch, schedule: Schedule | None = None, steps: int | None = None,
               generator: torch.Generator | None = None, thought: Thought | None = None) -> Thought:
    """Think to the end and return the Thought (a schedule that asks for decisions needs a driver)."""
    events = think(model, batch, schedule, steps, generator=generator, thought=thought)
    while True:
        try:
            event = next(events)
        except StopIteration as done:
            return done.value
        if isinstance(event, Decide):
            raise TypeError("this schedule asks its caller for decisions; drive th1nker.loop.think yourself "
                            "(as BlockChoiceVecEnv does) or give the schedule a policy")
