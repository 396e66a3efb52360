"""Sudoku on 4x4, 6x6 or 9x9 grids (`task.size`). Difficulty = the number of clues given.

Every puzzle has exactly one solution, checked by a solver: a random full grid is emptied cell by cell
in random order, each removal kept only while the solution stays unique, until `difficulty` clues are
left. Train and evaluation puzzles never coincide: a puzzle's CRC32 parity says which side it may be
on. With `task.train_set: N` training draws from one fixed set of N puzzles (TRM trains on 1,000), each
drawn with TRM's augmentations applied on the fly: digit relabelling, band and stack shuffles, row and
column shuffles inside them, and transposition (square boxes only). Input per cell: 0 blank, 1..N a
clue; target: the solution's digit - 1 in every cell.
"""

from __future__ import annotations

import random
import zlib

import torch
from torch import Tensor

from th1nker.errors import DataError
from th1nker.tasks import register_task
from th1nker.tasks.base import Batch, Task, TaskSpec

BOXES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}  # grid side -> (box rows, box columns)


class Grid:
    """The cells' rows, columns and boxes for one grid side, and an exact solution counter."""

    def __init__(self, n: int):
        if n not in BOXES:
            raise DataError(f"sudoku: task.size must be one of {sorted(BOXES)}, got {n}")
        self.n, (self.br, self.bc) = n, BOXES[n]
        self.unit = [(i // n, i % n, (i // n) // self.br * (n // self.bc) + (i % n) // self.bc)
                     for i in range(n * n)]
        self.full = (1 << n) - 1

    def count(self, cells: list[int], limit: int = 2) -> int:
        """How many solutions `cells` (0 = blank) has, counting up to `limit`."""
        n = self.n
        rows, cols, boxes = [0] * n, [0] * n, [0] * n
        for i, v in enumerate(cells):
            if v:
                r, c, b = self.unit[i]
                bit = 1 << (v - 1)
                if (rows[r] | cols[c] | boxes[b]) & bit:
                    return 0
                rows[r] |= bit
                cols[c] |= bit
                boxes[b] |= bit
        return self._search([i for i, v in enumerate(cells) if not v], rows, cols, boxes, limit)

    def _search(self, empty: list[int], rows, cols, boxes, limit: int) -> int:
        if not empty:
            return 1
        best, best_free, best_n = -1, 0, self.n + 1
        for k, i in enumerate(empty):  # the most constrained cell first
            r, c, b = self.unit[i]
            free = self.full & ~(rows[r] | cols[c] | boxes[b])
            m = free.bit_count()
            if m < best_n:
                best, best_free, best_n = k, free, m
                if m <= 1:
                    break
        if best_n == 0:
            return 0
        i = empty[best]
        rest = empty[:best] + empty[best + 1:]
        r, c, b = self.unit[i]
        found = 0
        while best_free and found < limit:
            bit = best_free & -best_free
            best_free ^= bit
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            found += self._search(rest, rows, cols, boxes, limit - found)
            rows[r] ^= bit
            cols[c] ^= bit
            boxes[b] ^= bit
        return found

    def solve(self, cells: list[int]) -> list[int] | None:
        """The first solution found (None if there is none)."""
        cells = list(cells)
        empty = [i for i, v in enumerate(cells) if not v]

        def fill(k: int) -> bool:
            if k == len(empty):
                return True
            i = empty[k]
            for v in self._candidates(cells, i):
                cells[i] = v
                if fill(k + 1):
                    return True
            cells[i] = 0
            return False

        return cells if self.count(cells, 1) and fill(0) else None

    def _candidates(self, cells: list[int], i: int, rng: random.Random | None = None) -> list[int]:
        r, c, b = self.unit[i]
        used = {cells[j] for j in range(self.n * self.n) if self.unit[j][0] == r or self.unit[j][1] == c
                or self.unit[j][2] == b}
        out = [v for v in range(1, self.n + 1) if v not in used]
        if rng is not None:
            rng.shuffle(out)
        return out

    def random_solution(self, rng: random.Random) -> list[int]:
        """A uniformly shuffled backtracking fill of the empty grid."""
        cells = [0] * (self.n * self.n)

        def fill(i: int) -> bool:
            if i == len(cells):
                return True
            for v in self._candidates(cells, i, rng):
                cells[i] = v
                if fill(i + 1):
                    return True
            cells[i] = 0
            return False

        fill(0)
        return cells

    def puzzle(self, clues: int, rng: random.Random, side: int, tries: int = 50) -> tuple[list[int], list[int]]:
        """(puzzle, solution) with exactly `clues` clues and one solution, on train (side 1) or eval (0)."""
        for _ in range(tries):
            solution = self.random_solution(rng)
            cells = list(solution)
            order = list(range(len(cells)))
            rng.shuffle(order)
            left = len(cells)
            for i in order:
                if left == clues:
                    break
                cells[i] = 0
                if self.count(cells) == 1:
                    left -= 1
                else:
                    cells[i] = solution[i]
            if left == clues and zlib.crc32(bytes(cells)) % 2 == side:
                return cells, solution
        raise DataError(f"sudoku: no {self.n}x{self.n} puzzle with a unique solution and {clues} clues found in "
                        f"{tries} tries; raise the clue counts in task.train / task.eval")


def augment(puzzles: Tensor, solutions: Tensor, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """TRM's Sudoku augmentations, one random draw per example: (B, n, n) grids of digits 0..n."""
    b = puzzles.shape[0]
    br, bc = BOXES[n]

    def order(groups: int, size: int) -> Tensor:  # (B, groups*size): groups shuffled, members shuffled
        outer = torch.argsort(torch.rand(b, groups, generator=generator), 1)
        inner = torch.argsort(torch.rand(b, groups, size, generator=generator), 2)
        return (outer[:, :, None] * size + inner).flatten(1)

    rows, cols = order(n // br, br), order(n // bc, bc)  # bands of br rows, stacks of bc columns
    digits = torch.cat([torch.zeros(b, 1, dtype=torch.long),
                        1 + torch.argsort(torch.rand(b, n, generator=generator), 1)], 1)
    idx = torch.arange(b)[:, None, None]
    out = []
    for grid in (puzzles, solutions):
        g = digits.gather(1, grid[idx, rows[:, :, None], cols[:, None, :]].flatten(1)).view(b, n, n)
        out.append(g)
    if br == bc:
        flip = torch.rand(b, generator=generator) < 0.5
        out = [torch.where(flip[:, None, None], g.transpose(1, 2), g) for g in out]
    return out[0], out[1]


@register_task("sudoku")
class Sudoku(Task):
    """Fill every blank cell of a Sudoku with a unique solution; exact match over the whole grid."""

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        self.n = config.size or 9
        self.grid = Grid(self.n)
        self.spec = TaskSpec(vocab=self.n + 1, classes=self.n)
        self._pool: tuple[Tensor, Tensor] | None = None

    def make(self, count: int, clues: list[int], rng: random.Random, side: int) -> tuple[Tensor, Tensor]:
        """(puzzles, solutions) as (count, n, n) tensors, the k-th with clues[k % len(clues)] clues."""
        made = [self.grid.puzzle(clues[k % len(clues)], rng, side) for k in range(count)]
        shape = (count, self.n, self.n)
        return torch.tensor([p for p, _ in made]).view(shape), torch.tensor([s for _, s in made]).view(shape)

    def _as_batch(self, puzzles: Tensor, solutions: Tensor, difficulty: int | None) -> Batch:
        return Batch({"text": puzzles.flatten(1)}, solutions.flatten(1) - 1, grid=(self.n, self.n),
                     difficulty=difficulty)

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        """`n` fresh held-out-side puzzles with `difficulty` clues."""
        rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
        return self._as_batch(*self.make(n, [difficulty], rng, side=0), difficulty)

    def train_batch(self, n: int, generator: torch.Generator) -> Batch:
        lo, hi = self.config.train
        if not self.config.train_set:
            rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
            clues = [int(torch.randint(lo, hi + 1, (1,), generator=generator))]
            return self._as_batch(*augment(*self.make(n, clues, rng, side=1), self.n, generator), None)
        if self._pool is None:  # the fixed training set, from the task's seed alone
            self._pool = self.make(self.config.train_set, list(range(lo, hi + 1)), random.Random(self.seed), side=1)
        pick = torch.randint(0, self.config.train_set, (n,), generator=generator)
        return self._as_batch(*augment(self._pool[0][pick], self._pool[1][pick], self.n, generator), None)

    def encode(self, text: str) -> Batch:
        digits = [0 if ch in ".0_" else int(ch) for ch in text if ch.isdigit() or ch in "._"]
        if len(digits) != self.n * self.n or max(digits, default=0) > self.n:
            raise DataError(f"--input: a {self.n}x{self.n} sudoku needs {self.n * self.n} cells of digits 1..{self.n} "
                            f"or '.' for a blank (row separators are ignored), got {len(digits)}")
        solution = self.grid.solve(digits)
        if solution is None:
            raise DataError("--input: this sudoku has no solution; check the clues")
        shape = (1, self.n, self.n)
        return self._as_batch(torch.tensor(digits).view(shape), torch.tensor(solution).view(shape), sum(map(bool, digits)))

    def decode(self, prediction: Tensor) -> str:
        cells = [str(int(v) + 1) for v in prediction.flatten().tolist()]
        return "/".join("".join(cells[r * self.n:(r + 1) * self.n]) for r in range(self.n))
