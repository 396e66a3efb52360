"""Synthetic scenes: coloured squares, circles and triangles on a 4 x 4 grid, and questions about them.

A scene holds 1..difficulty shapes on a black image of task.image_size pixels, each in its own grid
cell (a cell of 8 pixels at 32 px = one ViT patch of 8). Questions: how many shapes, how many of a
colour or of a kind, whether a given coloured kind is there, and the colour of the first shape in
reading order (rows top to bottom, each left to right).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from th1nker.errors import RecipeError
from th1nker.tasks import register_task
from th1nker.tasks.base import Batch
from th1nker.tasks.media import Example, MediaQA, check_count, choose, draw

GRID = 4
MAX_SHAPES = GRID * GRID
COLOURS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0), "yellow": (1.0, 1.0, -1.0)}
KINDS = ("square", "circle", "triangle")
SPAN = 0.8  # a shape spans this fraction of its cell (from the centre to each side)


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    row: int
    col: int


@lru_cache(maxsize=None)
def shape_mask(kind: str, cell: int) -> Tensor:
    """(cell, cell) bool: the pixels a shape covers in its cell; triangles point up."""
    c = (torch.arange(cell) + 0.5) / cell * 2 - 1  # pixel centres in [-1, 1]
    y, x = c[:, None], c[None, :]
    if kind == "square":
        return (x.abs() <= SPAN) & (y.abs() <= SPAN)
    if kind == "circle":
        return x ** 2 + y ** 2 <= SPAN ** 2
    return (y.abs() <= SPAN) & (x.abs() <= (y + SPAN) / 2)


def draw_scene(shapes: list[Shape], size: int) -> Tensor:
    """(3, size, size) in [-1, 1]: the shapes on black."""
    cell = size // GRID
    image = torch.full((3, size, size), -1.0)
    for s in shapes:
        region = image[:, s.row * cell:(s.row + 1) * cell, s.col * cell:(s.col + 1) * cell]
        region[:, shape_mask(s.kind, cell)] = torch.tensor(COLOURS[s.colour])[:, None]
    return image


def random_scene(count: int, generator: torch.Generator) -> list[Shape]:
    """`count` shapes of random kinds and colours in distinct random cells, in reading order."""
    cells = sorted(torch.randperm(MAX_SHAPES, generator=generator)[:count].tolist())
    return [Shape(choose(generator, KINDS), choose(generator, list(COLOURS)), c // GRID, c % GRID) for c in cells]


def ask_scene(shapes: list[Shape], generator: torch.Generator) -> tuple[str, str]:
    """A random question about `shapes` and its answer."""
    kind = draw(generator, 0, 4)
    if kind == 0:
        return "how many shapes?", str(len(shapes))
    if kind == 1:
        colour = choose(generator, list(COLOURS))
        return f"how many {colour} shapes?", str(sum(s.colour == colour for s in shapes))
    if kind == 2:
        shape = choose(generator, KINDS)
        return f"how many {shape}s?", str(sum(s.kind == shape for s in shapes))
    if kind == 3:  # half the time about a shape that is there
        s = choose(generator, shapes)
        if draw(generator, 0, 1):
            colour, shape = s.colour, s.kind
        else:
            colour, shape = choose(generator, list(COLOURS)), choose(generator, KINDS)
        there = any(t.colour == colour and t.kind == shape for t in shapes)
        return f"is there a {colour} {shape}?", "yes" if there else "no"
    return "what colour is the first shape?", shapes[0].colour


def check_size(task: str, size: int) -> None:
    if size % GRID:
        raise RecipeError(f"task.image_size {size}: {task} draws on a {GRID} x {GRID} grid; use a multiple of {GRID}")


@register_task("scene_qa")
class SceneQA(MediaQA):
    """Questions about a synthetic scene of shapes: counts, colours, kinds, reading order."""

    modalities = ("image",)

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        check_size(self.name, config.image_size)
        self.setup(["no", "yes", *map(str, range(MAX_SHAPES + 1)), *COLOURS])

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        check_count(self.name, "shapes", difficulty, MAX_SHAPES)
        examples = []
        for _ in range(n):
            shapes = random_scene(draw(generator, 1, difficulty), generator)
            question, answer = ask_scene(shapes, generator)
            examples.append(Example(question, answer, image=draw_scene(shapes, self.config.image_size)))
        return self.pack(examples, difficulty)
