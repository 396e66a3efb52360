"""The bottom layer of the recipe schema: strict config models and the block config base (no torch)."""

from __future__ import annotations

import difflib
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["read", "process", "output", "probe"]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, and so are infinite or NaN numbers."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


class BlockConfig(Strict):
    """Fields every block has; each block kind extends this with its own.

    `role` says what the block does to the Thought: a read or process block writes a state, an output
    block records predictions without writing a state, a probe chooses the next block.
    """

    role: ClassVar[Role] = "process"

    kind: str
    cost: float = Field(1.0, ge=0, allow_inf_nan=False, description="compute cost of one call, used by RL rewards")

    def problems(self, dim: int) -> list[str]:
        """What is wrong with this block in a model of width `dim`, one line each (the caller adds the path)."""
        return []


def unknown_name_message(what: str, name: str, known) -> str:
    """'unknown X 'name'; did you mean ...? (known: ...)' for a name that is not among `known`."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {what} '{name}'{hint} (known: {', '.join(known)})"
