"""What the thinking loop (`th1nker.loop.think`) yields to whoever drives it."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from th1nker.thought import Thought


@dataclass
class StepEnd:
    thought: Thought


@dataclass
class WindowEnd:
    """A gradient window ended: `loss` = weighted step losses + weighted auxiliary losses, for one backward."""

    thought: Thought
    loss: Tensor
    step_losses: dict[int, Tensor]   # step index in the unroll -> that step's output loss
    aux: dict[str, Tensor] = field(default_factory=dict)  # auxiliary loss name -> its value, before its weight


@dataclass
class Decide:
    """The schedule asks for each example's next action (send back a (B,) long tensor)."""

    thought: Thought
    mask: Tensor      # (B, A + 1) bool: legal actions, halt last
    rows: Tensor      # (B,) bool: the examples asked (the others halted or ended this step already)
    position: int     # how many blocks of this step came before (0 = the step's first choice)


Event = StepEnd | WindowEnd | Decide
