"""Maze path finding on a grid of squares. Difficulty = maze size n (n x n cells).

An n x n cell perfect maze is laid out on a (2n+1) x (2n+1) grid: cell (r, c) is square (2r+1, 2c+1)
and the squares between cells are walls or passages. Start and goal are two random distinct cells;
the maze is carved by a randomized depth-first search rooted at the start, so the unique path to the
goal is the chain of DFS parents. Input per square: 0 wall, 1 open, 2 start, 3 goal; target: 1 on the
path start -> goal (both included), else 0. Every square is scored.
"""

from __future__ import annotations

import re
from collections import deque

import torch
from torch import Tensor

from th1nker.errors import DataError
from th1nker.tasks import register_task
from th1nker.tasks.base import Batch, Task, TaskSpec

WALL, OPEN, START, GOAL = 0, 1, 2, 3
_CHARS = {"#": WALL, ".": OPEN, "S": START, "G": GOAL}


def _carve(n: int, start: int, goal: int, rand: list[float]) -> tuple[list[int], list[int]]:
    """One maze: (tokens, target) as flat lists over the (2n+1)^2 grid; `rand` holds n*n-1 draws."""
    w = 2 * n + 1
    sq = [(2 * (c // n) + 1) * w + 2 * (c % n) + 1 for c in range(n * n)]
    grid, parent = [WALL] * (w * w), [-1] * (n * n)
    seen = [False] * (n * n)
    seen[start], grid[sq[start]] = True, OPEN
    stack, k = [start], 0
    while stack:
        c = stack[-1]
        r, q = divmod(c, n)
        nbrs = [d for d, ok in ((c - n, r > 0), (c + n, r < n - 1), (c - 1, q > 0), (c + 1, q < n - 1))
                if ok and not seen[d]]
        if not nbrs:
            stack.pop()
            continue
        d = nbrs[min(int(rand[k] * len(nbrs)), len(nbrs) - 1)]
        k += 1
        seen[d], parent[d] = True, c
        grid[sq[d]] = grid[(sq[c] + sq[d]) // 2] = OPEN  # the midpoint of two squares in a row/column
        stack.append(d)
    target = [0] * (w * w)
    c = goal
    while c != start:
        target[sq[c]] = target[(sq[c] + sq[parent[c]]) // 2] = 1
        c = parent[c]
    target[sq[start]] = 1
    grid[sq[start]], grid[sq[goal]] = START, GOAL
    return grid, target


def _shortest_path(tokens: list[int], h: int, w: int) -> list[int] | None:
    """0/1 per square on a shortest start -> goal path through non-wall squares (BFS), or None."""
    s, g = tokens.index(START), tokens.index(GOAL)
    prev = {s: s}
    todo = deque([s])
    while todo:
        i = todo.popleft()
        if i == g:
            break
        r, c = divmod(i, w)
        for j, ok in ((i - w, r > 0), (i + w, r < h - 1), (i - 1, c > 0), (i + 1, c < w - 1)):
            if ok and j not in prev and tokens[j] != WALL:
                prev[j] = i
                todo.append(j)
    if g not in prev:
        return None
    path = [0] * (h * w)
    i = g
    while i != s:
        path[i], i = 1, prev[i]
    path[s] = 1
    return path


@register_task("maze")
class Maze(Task):
    """Mark the squares of the unique start -> goal path in a random perfect maze."""

    spec = TaskSpec(vocab=4, classes=2)

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        self._last: Batch | None = None  # the maze of the latest encode(), drawn by decode()

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        size = difficulty
        if size < 2:
            raise DataError(f"maze: difficulty (maze size in cells) must be >= 2, got {size}; "
                            "set task.train and task.eval to sizes >= 2")
        cells = size * size
        start = torch.randint(0, cells, (n,), generator=generator)
        goal = (start + torch.randint(1, cells, (n,), generator=generator)) % cells
        rand = torch.rand(n, cells - 1, generator=generator, dtype=torch.float64).tolist()
        made = [_carve(size, s, g, r) for s, g, r in zip(start.tolist(), goal.tolist(), rand)]
        side = 2 * size + 1
        return Batch({"text": torch.tensor([m[0] for m in made])}, torch.tensor([m[1] for m in made]),
                     grid=(side, side), difficulty=size)

    def encode(self, text: str) -> Batch:
        rows = [r.strip() for r in re.split(r"[\n/]", text) if r.strip()]
        fix = "draw the maze with '#' wall, '.' open, one 'S' and one 'G', rows split by newlines or '/'"
        if not rows:
            raise DataError(f"--input: the maze is empty; {fix}, e.g. '#####/#S.G#/#####'")
        bad = sorted(set("".join(rows)) - set(_CHARS))
        if bad:
            raise DataError(f"--input: the maze has characters {''.join(bad)!r}; {fix}")
        if len({len(r) for r in rows}) > 1:
            raise DataError(f"--input: the maze rows have different lengths {[len(r) for r in rows]}; "
                            "make it rectangular (every row the same length)")
        flat = "".join(rows)
        if flat.count("S") != 1 or flat.count("G") != 1:
            raise DataError(f"--input: the maze has {flat.count('S')} 'S' and {flat.count('G')} 'G'; "
                            "mark exactly one start 'S' and one goal 'G'")
        h, w = len(rows), len(rows[0])
        tokens = [_CHARS[ch] for ch in flat]
        path = _shortest_path(tokens, h, w)
        if path is None:
            raise DataError("--input: the maze has no open path from 'S' to 'G'; open a way through the walls")
        size = (h - 1) // 2 if h == w and h % 2 else None
        self._last = Batch({"text": torch.tensor([tokens])}, torch.tensor([path]), grid=(h, w), difficulty=size)
        return self._last

    def decode(self, prediction: Tensor, batch: Batch | None = None) -> str:
        """Draw the predicted path ('*') on the maze of `batch` (default: the last `encode`d one).

        'S' and 'G' stay as letters; without a maze the grid is assumed square and walls are not drawn.
        """
        pred = prediction.flatten().tolist()
        batch = batch or self._last
        if batch is not None and batch.grid and batch.grid[0] * batch.grid[1] == len(pred):
            (h, w), tokens = batch.grid, batch.inputs["text"][0].flatten().tolist()
        else:
            h = w = round(len(pred) ** 0.5)
            tokens = [OPEN] * len(pred)
        chars = ["S" if t == START else "G" if t == GOAL else "*" if p == 1 else "#" if t == WALL else "."
                 for t, p in zip(tokens, pred)]
        return "\n".join("".join(chars[r * w:(r + 1) * w]) for r in range(h))
