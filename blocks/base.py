"""The Block base class: an nn.Module that reads the Thought and returns it updated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from th1nker.recipe import BlockConfig
from th1nker.tasks.base import TaskSpec
from th1nker.thought import Thought


@dataclass(frozen=True)
class BuildContext:
    """What a block may need to know when it is built."""

    name: str                     # the instance name in the recipe
    dim: int                      # latent width
    spec: TaskSpec                # the task's vocabulary and targets
    actions: tuple[str, ...] = () # block instances a probe may choose between (halt comes after them)
    slots: int | None = None      # fixed latent length, or None when it follows the input


class Block(nn.Module):
    """A unit of thinking. Subclass, give it a `Config`, decorate with `@register("kind")`."""

    kind: ClassVar[str] = ""
    Config: ClassVar[type[BlockConfig]] = BlockConfig

    def __init__(self, config: BlockConfig, ctx: BuildContext):
        super().__init__()
        self.config = config
        self.name = ctx.name
        self.cost = config.cost

    def forward(self, thought: Thought) -> Thought:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}, kind={self.kind!r}"
