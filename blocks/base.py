"""The Block base class: an nn.Module that reads the Thought and returns it updated.

What a block may do with the Thought (the loop and `Th1nker.run_call` own the rest):
* read `thought.latent` (the state its call names, with the call's `add` terms already summed in),
  `inputs`, `store`, `longterm`, `step`, `grid`;
* write `thought.latent` (read and process blocks: it becomes the state the call writes; output blocks
  and probes leave it as it was);
* record predictions with `thought.record(Output(...))` (output blocks);
* add per-call auxiliary losses to `thought.window.losses` and cache values that must not cross a
  gradient window in `thought.window.cache`; record what it read from an on-disk store in `thought.reads`.
A block keeps no loss, cache or schedule state on itself between calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from th1nker.schema import BlockConfig
from th1nker.tasks.base import TaskSpec
from th1nker.thought import Thought


@dataclass(frozen=True)
class BuildContext:
    """What a block may need to know when it is built."""

    name: str                     # the instance name in the recipe
    dim: int                      # latent width
    spec: TaskSpec                # the task's vocabulary and targets
    actions: tuple[str, ...] = () # block instances a probe may choose between (halt comes after them)
    slots: int | None = None      # fixed length of the states it is called on, or None when they follow the input
    aux_weight: float = 0.01      # weight of balance losses (train.aux_loss_weight)


class Block(nn.Module):
    """A unit of thinking. Subclass, decorate with `@register("kind")` (its `Config` holds its fields)."""

    kind: ClassVar[str] = ""
    Config: ClassVar[type[BlockConfig]] = BlockConfig

    def __init__(self, config: BlockConfig, ctx: BuildContext):
        super().__init__()
        self.config = config
        self.name = ctx.name
        self.cost = config.cost
        self._compiled_steps: dict[str, Callable] = {}

    def forward(self, thought: Thought) -> Thought:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def fusable(self) -> bool:
        """Whether a compiled generation's one-token step may run this block inside one graph with the step's
        other calls (`th1nker.fused_step`): thinker blocks as `_layers(h, caches)`, heads as `logits(h)`."""
        return False

    def maybe_compiled(self, thought: Thought, method: Callable) -> Callable:
        """`method` (one of this block's, over tensors and caches), or, for the one-token steps of a compiled
        generation (`DecodeCache.compiled`), the same method compiled once with static shapes."""
        decoding = thought.decoding
        if decoding is not None and decoding.compiled and thought.latent.shape[1] == 1:
            return self._compiled(method)
        return method

    def _compiled(self, method: Callable) -> Callable:
        """`method` compiled once with static shapes (`compile_static`)."""
        name = method.__name__
        if name not in self._compiled_steps:
            self._compiled_steps[name] = compile_static(method, next(self.parameters(), torch.empty(0)).device)
        return self._compiled_steps[name]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, kind={self.kind!r}"


def compile_static(fn: Callable, device: torch.device) -> Callable:
    """`fn` compiled as one graph with static shapes, for the one-token steps of a compiled generation; on the
    CPU with Inductor's C++ wrapper (at decoding sizes a call is mostly Python launching kernels: 2.3x faster
    a thinker call)."""
    return torch.compile(fn, dynamic=False, fullgraph=True, options={"cpp_wrapper": True} if device.type == "cpu" else None)
