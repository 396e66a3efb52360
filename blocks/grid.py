"""Latent slots <-> 2-D feature maps, for blocks that convolve over the input's grid."""

from __future__ import annotations

from torch import Tensor

from th1nker.errors import DataError


def to_map(x: Tensor, grid: tuple[int, int] | None, who: str) -> Tensor:
    """(B, L, D) slots laid out on `grid` (rows, cols) -> (B, D, rows, cols)."""
    b, length, d = x.shape
    if grid is None or grid[0] * grid[1] != length:
        raise DataError(f"{who} needs a 2-D input grid matching {length} latent slots, got {grid} "
                        "(use a task with a grid, such as maze, and model.states.*.slots: input)")
    return x.transpose(1, 2).reshape(b, d, *grid)


def to_slots(y: Tensor) -> Tensor:
    """(B, D, rows, cols) -> (B, rows * cols, D)."""
    return y.flatten(2).transpose(1, 2)
