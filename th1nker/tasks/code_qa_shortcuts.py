"""Surface rules that answer a code_qa question without following its assignments, and what chance is.

Each rule maps a question (`...; x?`) to one of its program's numbers using only where numbers stand in
the text, never which name holds which: the first number, the last number (the one nearest the question
mark), the most frequent number (ties: the first), and the number nearest the asked name's own statement
(at 1 hop that statement *is* the answer, so this rule is the task itself there, not a shortcut).
"""

from __future__ import annotations

import random
import re
from collections import Counter

from th1nker.tasks.code_qa import CHAINS, make_question

NUMBER = re.compile(r"\d+")


def _numbers(question: str) -> list[re.Match]:
    return list(NUMBER.finditer(question))


def first_number(question: str) -> str:
    return _numbers(question)[0].group()


def last_number(question: str) -> str:
    return _numbers(question)[-1].group()


def most_frequent_number(question: str) -> str:
    return Counter(m.group() for m in _numbers(question)).most_common(1)[0][0]


def nearest_to_asked_name(question: str) -> str:
    """The number whose text is closest (in characters) to the statement assigning the asked name."""
    program, name = question[:-1].rsplit("; ", 1)
    at = re.search(rf"(^|; ){name} = ", program).end()
    return min(_numbers(program), key=lambda m: min(abs(m.start() - at), abs(m.end() - at))).group()


SHORTCUTS = {"first number": first_number, "last number": last_number,
             "most frequent number": most_frequent_number, "number nearest the asked name": nearest_to_asked_name}


def chance() -> float:
    """Exact chance: every program holds CHAINS distinct numbers and the answer is each equally often."""
    return 1 / CHAINS


def shortcut_scores(questions: list[tuple[str, str]]) -> dict[str, float]:
    """Fraction of `questions` (question, answer) each shortcut answers right."""
    return {name: sum(rule(q) == a for q, a in questions) / len(questions) for name, rule in SHORTCUTS.items()}


def generated(hops: int, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` fresh questions at `hops` (both splits)."""
    rng = random.Random(seed)
    return [make_question(hops, rng) for _ in range(n)]
