"""Key-value facts kept in long-term memory; each question needs one fact. Difficulty = blocks in the pool.

A fact is `key_len` key symbols then its value; `facts` facts make a block of `facts * (key_len + 1)`
tokens. Each example carries its own pool of `difficulty` blocks with distinct keys as
batch.inputs["memory"] (B, N, block tokens); the question (the text input) is the key of one fact,
the target its value (a class). A quarter of the other keys (up to 15) are hard negatives: the asked
key with one symbol changed, or with two of its symbols swapped, so that neither most of the key nor
its symbols in another order answer. Text form: keys are letters a..p, values 0..f; a question is a key
(`abcd`); a corpus file holds one fact per line (`abcd 7`), `facts` consecutive lines per block.
"""

from __future__ import annotations

import torch
from torch import Tensor

from th1nker.errors import DataError
from th1nker.tasks import register_task
from th1nker.tasks.base import IGNORE, Batch, Task, TaskSpec

LETTERS, DIGITS = "abcdefghijklmnop", "0123456789abcdef"


@register_task("kv_facts")
class KVFacts(Task):
    """Answer a key's value from a pool of compressed fact blocks."""

    swaps = True  # hard negatives include the asked key with two symbols swapped

    def __init__(self, config, seed: int = 0, facts: int = 4, key_len: int = 4):
        super().__init__(config, seed)
        self.facts, self.key_len = facts, key_len
        self.symbols, self.values = len(LETTERS), len(DIGITS)
        self.spec = TaskSpec(vocab=self.symbols + self.values, classes=self.values, target="class")

    @property
    def chunk(self) -> int:
        """Tokens per block."""
        return self.facts * (self.key_len + 1)

    def pool(self, blocks: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """One pool of `blocks` blocks with distinct keys: keys (F, key_len), values (F,), ids (blocks, chunk)."""
        keys, values, ids = self._facts(self._codes(1, blocks * self.facts, generator), generator)
        return keys[0], values[0], ids[0]

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        codes = self._codes(n, difficulty * self.facts, generator)
        asked = torch.randint(0, codes.shape[1], (n,), generator=generator)
        keys, values, ids = self._facts(self._near_misses(codes, asked, generator), generator)
        rows = torch.arange(n)
        return Batch({"text": keys[rows, asked], "memory": ids}, values[rows, asked], difficulty=difficulty)

    def _codes(self, n: int, count: int, generator: torch.Generator) -> Tensor:
        """(n, count) key codes, distinct within each row."""
        space = self.symbols ** self.key_len
        if count > space:
            raise DataError(f"kv_facts: {count} facts need distinct keys, only {space} exist; "
                            "use fewer blocks (task.train / task.eval)")
        if count * count > space:  # dense: draw without replacement
            return torch.stack([torch.randperm(space, generator=generator)[:count] for _ in range(n)])
        codes = torch.randint(0, space, (n, count), generator=generator)
        while (again := _repeats(codes)).any():  # sparse: redraw the rows that hold a repeated key
            codes[again] = torch.randint(0, space, (int(again.sum()), count), generator=generator)
        return codes

    def _near_misses(self, codes: Tensor, asked: Tensor, generator: torch.Generator) -> Tensor:
        """Replace a quarter of each row's other keys by hard negatives of the asked key, so that a question
        is answered by the exact key, not by most of it nor by its symbols in another order."""
        n, count = codes.shape
        m = min(count // 4, self.key_len * (self.symbols - 1) // 4)  # at most a quarter of the neighbours
        if m == 0:
            return codes
        rows = torch.arange(n)
        order = torch.rand(n, count, generator=generator)
        order[rows, asked] = 2.0
        slots = order.argsort(dim=1)[:, :m]  # m random slots other than the asked one
        base = codes[rows, asked][:, None]
        out = codes.scatter(1, slots, self._hard_negatives(base, m, generator))
        fixed = torch.zeros_like(codes, dtype=torch.bool).scatter(1, slots, True)
        fixed[rows, asked] = True
        while (clash := _later_repeats(out, fixed)).any():  # redraw drawn keys that a negative now repeats
            out[clash] = torch.randint(0, self.symbols ** self.key_len, (int(clash.sum()),), generator=generator)
        return out

    def _hard_negatives(self, base: Tensor, m: int, generator: torch.Generator) -> Tensor:
        """(k, 1) key codes -> (k, m) distinct codes: up to m // 2 with two differing symbols swapped,
        the rest with one symbol changed."""
        k, length, s = base.shape[0], self.key_len, self.symbols
        place = s ** torch.arange(length - 1, -1, -1)
        digits = base // place % s  # (k, length)
        position, shift = torch.cartesian_prod(torch.arange(length), torch.arange(1, s)).T
        changed = base + ((digits[:, position] + shift) % s - digits[:, position]) * place[position]
        i, j = torch.triu_indices(length, length, 1)
        di, dj = digits[:, i], digits[:, j]
        swapped = base + (dj - di) * place[i] + (di - dj) * place[j]
        n_swap = min(m // 2, len(i)) if self.swaps else 0
        pick = torch.where(di != dj, torch.rand(di.shape, generator=generator), 2.0).argsort(dim=1)[:, :n_swap]
        candidates = torch.cat([swapped.gather(1, pick),
                                changed.gather(1, torch.rand(changed.shape, generator=generator).argsort(dim=1)[:, :m])], 1)
        usable = torch.cat([(di != dj).gather(1, pick), torch.ones(k, m, dtype=torch.bool)], 1)
        return candidates.gather(1, (~usable).to(torch.uint8).argsort(dim=1, stable=True)[:, :m])

    def _facts(self, codes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Key symbols (n, F, key_len), values (n, F) and block token ids (n, F / facts, chunk) for key codes (n, F)."""
        n, count = codes.shape
        keys = codes[..., None] // self.symbols ** torch.arange(self.key_len - 1, -1, -1) % self.symbols
        values = self._values(keys, generator)
        ids = torch.cat([keys, values[..., None] + self.symbols], dim=2).reshape(n, count // self.facts, self.chunk)
        return keys, values, ids

    def _values(self, keys: Tensor, generator: torch.Generator) -> Tensor:
        """(n, F) values of the (n, F, key_len) keys: random, so only the memory knows them."""
        return torch.randint(0, self.values, keys.shape[:2], generator=generator)

    def encode(self, text: str) -> Batch:
        """A question (a key): its answer is unknown here, so the target is IGNORE."""
        key = text.strip()
        if len(key) != self.key_len or set(key) - set(LETTERS):
            raise DataError(f"--input {text!r}: a kv_facts question is a key of {self.key_len} letters a..p, e.g. 'abcd'")
        return Batch({"text": torch.tensor([[LETTERS.index(c) for c in key]])}, torch.tensor([IGNORE]))

    def decode(self, prediction: Tensor) -> str:
        return DIGITS[int(prediction)]

    def corpus_text(self, keys: Tensor, values: Tensor) -> str:
        """Facts as corpus lines `key value`."""
        return "".join("".join(LETTERS[s] for s in k) + f" {DIGITS[v]}\n" for k, v in zip(keys.tolist(), values.tolist()))

    def encode_corpus(self, text: str, source: str = "corpus") -> Tensor:
        """Corpus lines `key value` -> (blocks, chunk) token ids, `facts` lines per block."""
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if (len(parts) != 2 or len(parts[0]) != self.key_len or set(parts[0]) - set(LETTERS)
                    or len(parts[1]) != 1 or parts[1] not in DIGITS):
                raise DataError(f"{source}:{number}: expected `key value` ({self.key_len} letters a..p, a digit 0..f), "
                                f"e.g. 'abcd 7'; got {line!r}")
            rows.append([LETTERS.index(c) for c in parts[0]] + [self.symbols + DIGITS.index(parts[1])])
        if not rows or len(rows) % self.facts:
            raise DataError(f"{source}: {len(rows)} facts; a block holds {self.facts}, so the count must be a "
                            f"positive multiple of {self.facts}")
        return torch.tensor(rows).reshape(-1, self.chunk)


def _later_repeats(codes: Tensor, fixed: Tensor) -> Tensor:
    """(n, count) True on each repeat of a code within its row, never on a `fixed` entry (fixed entries
    are distinct, and sort first among equal codes)."""
    order = (codes * 2 + (~fixed)).argsort(dim=1)
    ordered = codes.gather(1, order)
    repeat = torch.zeros_like(fixed)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    return torch.zeros_like(fixed).scatter(1, order, repeat)


def _repeats(codes: Tensor) -> Tensor:
    """(n,) True where a row holds some code twice."""
    ordered = codes.sort(dim=1).values
    return (ordered[:, 1:] == ordered[:, :-1]).any(dim=1)


@register_task("kv_rule")
class KVRule(KVFacts):
    """kv_facts whose values follow a rule of the key, (first symbol + second symbol) mod 16: the memory
    holds the answer, and so does the question for a model that has learned the rule. A model that
    always reads its memory can answer by looking up alone; one trained with cleaned-memory batches
    (train.clean_memory) must also learn the rule, and keeps answering when its memory is gone."""

    def _values(self, keys: Tensor, generator: torch.Generator) -> Tensor:
        return (keys[..., 0] + keys[..., 1]) % self.values
