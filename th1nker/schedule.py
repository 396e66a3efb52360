"""Schedules decide which blocks make up each thinking step.

fixed: the recipe's step every time. random: a random walk through the graph within length bounds.
probe: the model's Probe picks each next block per example, and may halt. policy: any callable does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from th1nker.recipe import ScheduleConfig
from th1nker.thought import Thought

if TYPE_CHECKING:
    from th1nker.model import Th1nker

# policy(thought, mask) -> (B,) action indices into graph.actions (len(actions) = halt)
Policy = Callable[[Thought, Tensor], Tensor]


class Schedule:
    """Runs one thinking step on a Thought."""

    def run_step(self, model: "Th1nker", thought: Thought) -> Thought:  # pragma: no cover - abstract
        raise NotImplementedError


class FixedSchedule(Schedule):
    """The same walk of blocks at every step."""

    def __init__(self, step: list[str]):
        self.step = list(step)

    def run_step(self, model, thought):
        for name in self.step:
            thought = model.run_block(name, thought)
        return thought


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

    def run_step(self, model, thought):
        previous = thought.trace[-1] if thought.trace else None
        for name in self.walk(model.graph, previous):
            thought = model.run_block(name, thought)
        return thought


class PolicySchedule(Schedule):
    """Each example's next block is chosen by `policy(thought, mask)`; a step ends at an end block.

    Examples that chose different blocks run them as masked updates of the batch, so one batch can
    follow many paths. Choosing halt (index len(actions)) stops that example for good. Each decision
    charges `decision_cost` to the examples still deciding (not to those waiting or halted).
    """

    def __init__(self, policy: Policy, max_len: int, decision_cost: float = 0.0):
        self.policy = policy
        self.max_len = max_len
        self.decision_cost = decision_cost

    def run_step(self, model, thought):
        graph = model.graph
        table = model.mask_table()  # (A + 2, A + 1): row = last action (A = halt, A + 1 = none yet)
        n_actions = len(graph.actions)
        last = thought.aux.get("last_action")
        if last is None:
            last = torch.full_like(thought.halted, n_actions + 1, dtype=torch.long)
        done = thought.halted.clone()
        to_end = model.distance_to_end()
        for i in range(self.max_len):
            mask = table[last].clone()
            if i == 0:  # a step begins at a start block
                mask[:, :n_actions] &= model.start_mask()
            mask[:, :n_actions] &= to_end <= self.max_len - i  # only blocks that can still end the step
            done |= ~mask.any(dim=1)
            if bool(done.all()):
                break
            choice = self.policy(thought, mask)
            thought.cost = thought.cost + self.decision_cost * ~done
            choice = torch.where(done, torch.full_like(choice, -1), choice)
            halting = choice == n_actions
            thought.halted |= halting
            done |= halting
            for a in choice[choice >= 0].unique().tolist():
                if a == n_actions:
                    continue
                rows = choice == a
                thought = model.run_block(graph.actions[a], thought, rows=rows)
                last = torch.where(rows, torch.full_like(last, a), last)
                if graph.actions[a] in graph.end:
                    done |= rows
            if bool(done.all()):
                break
        thought.aux["last_action"] = last
        return thought


def probe_policy(model: "Th1nker", probe: str, greedy: bool = True,
                 generator: torch.Generator | None = None) -> Policy:
    """A policy that asks the model's probe block, masked by the graph (its cost is charged by the schedule)."""

    def choose(thought: Thought, mask: Tensor) -> Tensor:
        block = model.blocks[probe]
        logits = block.logits(thought.latent).masked_fill(~mask.to(thought.latent.device), float("-inf"))
        if greedy:
            return logits.argmax(-1)
        return torch.multinomial(logits.softmax(-1).float().cpu(), 1, generator=generator).squeeze(1).to(logits.device)

    return choose


def make_schedule(config: ScheduleConfig, model: "Th1nker", generator: torch.Generator | None = None,
                  policy: Policy | None = None) -> Schedule:
    """The schedule a recipe asks for (`policy` is required for kind 'policy')."""
    if config.kind == "fixed":
        return FixedSchedule(config.step)
    if config.kind == "random":
        return RandomSchedule(config.min_len, config.max_len, generator)
    if config.kind == "probe":
        return PolicySchedule(probe_policy(model, config.probe, config.greedy, generator), config.max_len,
                              model.blocks[config.probe].cost)
    if policy is None:
        raise ValueError("schedule kind 'policy' needs a policy callable: make_schedule(..., policy=fn)")
    return PolicySchedule(policy, config.max_len)
