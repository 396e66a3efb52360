"""Schedules decide which calls make up each thinking step.

fixed: the recipe's step every time. random: a random walk through the graph within length bounds.
probe: the model's Probe picks each next block per example, and may halt. policy: a callable picks,
or, with none, the caller of the thinking loop does (a `Decide` event; the RL environments).

A schedule's `step(model, thought)` is a generator: it runs the step's calls and yields only to ask
its caller for decisions. What it remembers across steps lives on the Thought (`last_action`).
"""

from __future__ import annotations

from typing import Callable, Generator

import torch
from torch import Tensor

from th1nker.errors import RecipeError
from th1nker.events import Decide
from th1nker.recipe import ScheduleConfig, as_call
from th1nker.thought import Thought

# policy(thought, mask) -> (B,) action indices into graph.actions (len(actions) = halt)
Policy = Callable[[Thought, Tensor], Tensor]


class Schedule:
    """Runs one thinking step on a Thought."""

    halts = False  # whether examples may stop thinking before the last step

    def step(self, model, thought: Thought) -> Generator:  # pragma: no cover - abstract
        raise NotImplementedError


class FixedSchedule(Schedule):
    """The same calls at every step."""

    def __init__(self, step: list):
        self.step_entries = list(step)

    def step(self, model, thought):
        rows = None if thought.all_live else ~thought.halted  # halted examples cost nothing
        model.run_step(self.step_entries, thought, rows)
        yield from ()


class RandomSchedule(Schedule):
    """A random walk from a start block to an end block, `min_len`..`max_len` blocks long."""

    def __init__(self, min_len: int, max_len: int, generator: torch.Generator | None = None):
        self.min_len, self.max_len = min_len, max_len
        self.generator = generator or torch.Generator().manual_seed(0)

    def _pick(self, options: list[str]) -> str:
        return options[int(torch.randint(len(options), (1,), generator=self.generator))]

    def walk(self, graph, previous: str | None = None) -> list[str]:
        dist = graph.distance_to_end()
        first = [n for n in graph.start if n in dist and (previous is None or graph.g.has_edge(previous, n))]
        walk = [self._pick(first or [n for n in graph.start if n in dist])]
        while len(walk) < self.max_len:
            at_end = walk[-1] in graph.end
            if at_end and len(walk) >= self.min_len and bool(torch.rand(1, generator=self.generator) < 0.5):
                break
            room = self.max_len - len(walk)
            nexts = [n for n in graph.successors(walk[-1]) if dist.get(n, room + 1) <= room]
            if not nexts:
                break
            walk.append(self._pick(nexts))
        return walk

    def step(self, model, thought):
        previous = thought.trace[-1] if thought.trace else None
        for name in self.walk(model.graph, previous):
            model.run_call(name, thought)
        yield from ()


class PolicySchedule(Schedule):
    """Each example's next block is chosen by `policy(thought, mask)` (None: by the loop's caller, through
    a `Decide` event); a step ends at an end block.

    Examples that chose different blocks run them as masked updates of the batch, so one batch can
    follow many paths. Choosing halt (index len(actions)) stops that example for good. Each decision
    charges `decision_cost` to the examples still deciding (not to those waiting or halted).
    """

    halts = True

    def __init__(self, policy: Policy | None, max_len: int, decision_cost: float = 0.0):
        self.policy = policy
        self.max_len = max_len
        self.decision_cost = decision_cost

    def step(self, model, thought):
        graph = model.graph
        table = model.mask_table()  # (A + 2, A + 1): row = last action (A = halt, A + 1 = none yet)
        n_actions = len(graph.actions)
        is_end = torch.tensor([a in graph.end for a in graph.actions], device=table.device)
        to_end = model.distance_to_end()
        last = thought.last_action
        if last is None:
            last = torch.full_like(thought.halted, n_actions + 1, dtype=torch.long)

        def legal(i: int, last: Tensor, done: Tensor) -> tuple[Tensor, Tensor]:
            mask = table[last].clone()
            if i == 0:  # a step begins at a start block
                mask[:, :n_actions] &= model.start_mask()
            mask[:, :n_actions] &= to_end <= self.max_len - i  # only blocks that can still end the step
            return mask, done | ~mask.any(dim=1)

        mask, done = legal(0, last, thought.halted.clone())
        if bool(done.all()):
            return
        for i in range(self.max_len):
            choice = self.policy(thought, mask) if self.policy else (yield Decide(thought, mask, ~done, i))
            thought.cost = thought.cost + self.decision_cost * ~done
            choice = torch.where(done, torch.full_like(choice, -1), choice)
            halting = choice == n_actions
            thought.halted |= halting
            ran = (choice >= 0) & ~halting
            group = torch.where(ran, choice, n_actions)  # rows grouped by the block they run
            order = torch.argsort(group, stable=True)
            last = torch.where(ran, choice, last)
            done = done | halting | (ran & is_end[choice.clamp(0, n_actions - 1)])
            if i + 1 < self.max_len:
                mask, done = legal(i + 1, last, done)
            # the one host sync of a decision: how many rows run each block, and whether any go on
            sizes = torch.cat([torch.bincount(group, minlength=n_actions + 1)[:n_actions], done.all()[None]]).tolist()
            lo = 0
            for a, size in enumerate(sizes[:-1]):
                if size:
                    model.run_call(graph.actions[a], thought, index=order[lo:lo + size])
                lo += size
            thought.last_action = last
            if sizes[-1]:
                break
        thought.last_action = last


def probe_policy(model, probe: str, greedy: bool = True, generator: torch.Generator | None = None) -> Policy:
    """A policy that asks the model's probe block, masked by the graph (its cost is charged by the schedule)."""

    def choose(thought: Thought, mask: Tensor) -> Tensor:
        block = model.blocks[probe]
        latent = thought.states[model.default_state]
        logits = block.logits(latent).masked_fill(~mask.to(latent.device), float("-inf"))
        if greedy:
            return logits.argmax(-1)
        return torch.multinomial(logits.softmax(-1).float().cpu(), 1, generator=generator).squeeze(1).to(logits.device)

    return choose


def make_schedule(config: ScheduleConfig, model, generator: torch.Generator | None = None,
                  policy: Policy | None = None, external: bool = False) -> Schedule:
    """The schedule a recipe asks for. Kind 'policy' takes `policy`, or with `external` its decisions
    come from whoever drives the thinking loop (`Decide` events)."""
    if config.kind == "fixed":
        return FixedSchedule([as_call(e, model.default_state) for e in config.step])
    if config.kind == "random":
        return RandomSchedule(config.min_len, config.max_len, generator)
    if config.kind == "probe":
        return PolicySchedule(probe_policy(model, config.probe, config.greedy, generator), config.max_len,
                              model.blocks[config.probe].cost)
    if policy is None and not external:
        raise RecipeError("schedule.kind: 'policy' takes its decisions from an outside policy (an RL environment "
                          "or code that drives th1nker.loop.think); `th1nker train`/`eval` cannot run it: use "
                          "kind fixed, random or probe")
    return PolicySchedule(policy, config.max_len)
