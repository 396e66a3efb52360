"""Questions about tiny Python programs, as "question? answer." text for a code language model.

A question is a program and a name; its answer is the name's value:
`q = 41; d = 7; m = 90; t = 12; a = d; x = q; b = a; y = x; ...; b? 7.` The program is CHAINS chains of
assignments, all as long as the question's difficulty (hops from a name to its number; 1: assigned a number
directly): first each chain's root is assigned a distinct number (in random order), then the chains'
`a = b` links follow, interleaved at random but each chain in order (so the program runs as Python). The
asked name ends a chain drawn uniformly, so the answer is each of the program's numbers equally often, in
each position of the text: every rule that ignores the names (first, last or most frequent number, the
number nearest the question) is right exactly 1/CHAINS of the time (the rules: `code_qa_shortcuts`).
Every question whose text hashes into the held-out tenth is never trained on, and evaluation draws only
those: a right answer is generalisation, not recall.

Tokens come from task.tokenizer (the code LM's). Input = question, answer, eos; target = the next token
at the answer's positions only. Every answer token right under teacher forcing is the same event as the
greedy continuation of the question being exactly the answer, so accuracy is exact match.
"""

from __future__ import annotations

import random
import zlib

import torch

from th1nker.errors import DataError
from th1nker.tasks import register_task
from th1nker.tasks.base import IGNORE, Batch, Task, TaskSpec
from th1nker.tasks.vocab import load_tokenizer

NAMES = "abcdefghijklmnopqrstuvwxyz"
CHAINS = 4  # chains per program: the asked one and three distractors, each ending in its own number
MAX_HOPS = len(NAMES) // CHAINS  # every name in a program is distinct


def held_out(question: str) -> bool:
    """The fixed tenth of all questions kept for evaluation (by a hash of the text)."""
    return zlib.crc32(question.encode()) % 10 == 0


def make_question(hops: int, rng: random.Random) -> tuple[str, str]:
    """(question ending in '?', answer without '.'): CHAINS chains of `hops` names, the roots assigned
    distinct numbers first, then the links interleaved at random; the asked name ends a random chain."""
    names = rng.sample(NAMES, CHAINS * hops)
    chains = [names[i * hops:(i + 1) * hops] for i in range(CHAINS)]
    values = rng.sample(range(100), CHAINS)
    statements = [f"{chains[c][0]} = {values[c]}" for c in rng.sample(range(CHAINS), CHAINS)]
    links = [c for c in range(CHAINS) for _ in range(hops - 1)]
    rng.shuffle(links)
    done = [0] * CHAINS
    for c in links:
        done[c] += 1
        statements.append(f"{chains[c][done[c]]} = {chains[c][done[c] - 1]}")
    asked = rng.randrange(CHAINS)
    return "; ".join(statements) + f"; {chains[asked][-1]}?", str(values[asked])


@register_task("code_qa")
class CodeQA(Task):
    """Follow assignments to a value: held-out questions, exact-match answers."""

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        if not getattr(config, "tokenizer", None):
            raise DataError("task.tokenizer: code_qa needs the code LM's sentencepiece model, e.g. "
                            "tokenizer: data/code/tokenizer.model (`dvc repro code_tokenizer` makes it)")
        self.tokenizer = load_tokenizer(config.tokenizer)
        self.spec = TaskSpec(vocab=self.tokenizer.vocab_size, classes=self.tokenizer.vocab_size)
        bad = [d for d in [*config.train, *config.eval] if not 1 <= d <= MAX_HOPS]
        if bad:
            raise DataError(f"task.train / task.eval: code_qa difficulties are hops 1..{MAX_HOPS}, got {bad}")

    def examples(self, n: int, hops: int, generator: torch.Generator, evaluation: bool) -> list[tuple[str, str]]:
        """`n` questions of the split (held-out questions for evaluation, the rest for training)."""
        rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
        out = []
        while len(out) < n:
            q, a = make_question(hops, rng)
            if held_out(q) == evaluation:
                out.append((q, a))
        return out

    def batch(self, n: int, difficulty: int, generator: torch.Generator, evaluation: bool = False) -> Batch:
        return self.pack(self.examples(n, difficulty, generator, evaluation))

    def eval_questions(self, difficulty: int, n: int | None = None) -> list[tuple[str, str]]:
        """The fixed evaluation questions at `difficulty` (what eval_batch packs)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + difficulty + 7)
        return self.examples(n or self.config.eval_examples, difficulty, g, evaluation=True)

    def eval_batch(self, difficulty: int, n: int | None = None) -> Batch:
        return self.pack(self.eval_questions(difficulty, n))

    def pack(self, pairs: list[tuple[str, str]]) -> Batch:
        """The ids of 'question? answer.' + eos, padded with eos; targets at the answer's positions only."""
        rows, starts = [], []
        for q, a in pairs:
            row, question = self.tokenizer.encode(f"{q} {a}.", eos=True), self.tokenizer.encode(q)
            start = next((i for i, (x, y) in enumerate(zip(row, question)) if x != y), len(question))
            rows.append(row)
            starts.append(start)  # the answer's first token (the pieces of the question before it)
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.tokenizer.eos_id)
        target = torch.full((len(rows), width), IGNORE)
        for i, (row, start) in enumerate(zip(rows, starts)):
            ids[i, :len(row)] = torch.tensor(row)
            target[i, start - 1:len(row) - 1] = torch.tensor(row[start:])
        return Batch({"text": ids}, target)

    def encode(self, text: str) -> Batch:
        """A whole 'question? answer.' (scored), or a question alone (its next token is predicted)."""
        q, _, a = text.strip().partition("?")
        if not q.strip():
            raise DataError(f"--input {text!r}: code_qa takes a question, e.g. 'b = 3; a = b; a?'")
        if a.strip().rstrip("."):
            return self.pack([(q + "?", a.strip().rstrip("."))])
        ids = self.tokenizer.encode(q + "?")
        return Batch({"text": torch.tensor([ids])}, torch.full((1, len(ids)), IGNORE))

    def decode(self, prediction: torch.Tensor) -> str:
        return self.tokenizer.decode([int(i) for i in prediction.flatten() if int(i) != self.tokenizer.eos_id])
