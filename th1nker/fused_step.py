"""A fixed schedule's step as one compiled graph, for the one-token runs of a compiled generation.

Compiled block by block (`Block.maybe_compiled`), a one-token step of the thinking LM launches a graph per
call, and at one token that launch, not the arithmetic, is most of a call's time. When every call of the
step is `fusable` (thinker blocks without experts, plain output heads), `FusedStep` runs the step's
arithmetic as one graph over the states, the inputs the calls add and the calls' KV caches, then keeps the
Thought's record as `Th1nker._run` does: the states written, the outputs recorded, the `once` cache, trace,
cost and calls. Two graphs per step shape: with the `once` blocks computing (a run's first step) and with
their window value reused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from torch import Tensor

from th1nker.blocks.base import compile_static
from th1nker.recipe import CallConfig
from th1nker.thought import Output, Thought


@dataclass(frozen=True)
class FusedCall:
    """One call of the step as the graph sees it; `write` None: an output head (it records logits)."""

    block: str
    read: str
    add: tuple[str, ...]
    write: str | None


class FusedStep:
    """The calls of one fixed step, run as one compiled graph on a one-token Thought (see the module)."""

    def __init__(self, model, calls: tuple[FusedCall, ...]):
        self.model, self.calls = model, calls
        self.blocks = [model.blocks[c.block] for c in calls]
        self.names, self.cost = [c.block for c in calls], sum(b.cost for b in self.blocks)
        self.graph = compile_static(self._arithmetic, next(model.parameters()).device)

    @staticmethod
    def of(model, calls: list[CallConfig]) -> tuple[FusedCall, ...] | None:
        """The step's calls as `FusedCall`s, or None when some call cannot join the graph."""
        fused = []
        for call in calls:
            block = model.blocks[call.block]
            if call.repeat != 1 or not block.fusable:
                return None
            output = type(block.config).role == "output"
            fused.append(FusedCall(call.block, call.read, tuple(call.add), None if output else call.write))
        return tuple(fused)

    def run(self, thought: Thought) -> Thought:
        model, seen = self.model, Counter(thought.trace)
        caches, reused, inputs = [], {}, {}
        for call, block in zip(self.calls, self.blocks):
            cache = None
            if call.write is not None and block.config.once and call.block in thought.window.cache:
                reused[call.block] = thought.window.cache[call.block]
            else:
                if call.write is not None:
                    cache = block.decode_caches(thought, seen[call.block])
                inputs.update({name: model._addend(name, thought, thought.states[call.read])
                               for name in call.add if name not in thought.states})
            caches.append(cache)
            seen[call.block] += 1
        results = self.graph(dict(thought.states), inputs, caches, reused)
        for call, block, value in zip(self.calls, self.blocks, results):
            if call.write is None:
                thought.record(Output(thought.step, call.block, value))
            else:
                thought.states[call.write] = value
                if block.config.once:
                    thought.window.cache[call.block] = value
        model.account(thought, self.names, self.cost)
        return thought

    def _arithmetic(self, states: dict[str, Tensor], inputs: dict[str, Tensor], caches: list,
                    reused: dict[str, Tensor]) -> list[Tensor]:
        """Every call's result in order: the state it wrote, or a head's logits."""
        results = []
        for call, block, cache in zip(self.calls, self.blocks, caches):
            if call.write is not None and call.block in reused:  # a `once` block's value from the first step
                states[call.write] = reused[call.block]
                results.append(states[call.write])
                continue
            h = states[call.read]
            for name in call.add:
                h = h + (states[name] if name in states else inputs[name])
            if call.write is None:
                results.append(block.logits(h))
            else:
                states[call.write] = block._layers(h, cache)
                results.append(states[call.write])
        return results
