"""Question answering from a text file of `question? answer.` pairs, as characters or sentencepiece pieces.

The file (task.path, relative to the current directory; default: the bundled data/qa.txt) holds pairs
one or several per line. Input = the question's characters ('?' included); target = the answer's
characters then END at positions 0..len(answer), IGNORE after. Difficulty selects the split, fixed
by the seed: 0 = train (90%), 1 = held-out (10%). Training always uses split 0. With task.tokenizer (a
sentencepiece .model) the text is tokenized into pieces and END is the tokenizer's eos id.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import Tensor

from th1nker.errors import DataError
from th1nker.tasks import register_task
from th1nker.tasks.base import IGNORE, Batch, Task, TaskSpec
from th1nker.tasks.vocab import PieceVocab, load_tokenizer

DEFAULT_PATH = Path(__file__).parent / "data" / "qa.txt"
PAIR = re.compile(r"([^?\n]*\?)\s*([^?\n]*?)\.(?=\s|$)")
FORMAT = "expected 'question? answer.' pairs, one or several per line, e.g. 'what is 3 plus 4? 7.'"
TRAIN, HELD_OUT = 0, 1


class CharVocab:
    """Character tokenizer: 0 pad, 1 unknown, 2 end of answer, then the characters it was built from."""

    PAD, UNK, END = 0, 1, 2

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.ids = {ch: i + 3 for i, ch in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars) + 3

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(ch, self.UNK) for ch in text]

    def decode(self, ids) -> str:
        """Characters up to the first END; pad is dropped and unknown ids print as U+FFFD."""
        out = []
        for i in ids:
            if i == self.END:
                break
            if i != self.PAD:
                out.append(self.chars[i - 3] if 3 <= i < len(self) else "\ufffd")
        return "".join(out)


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """(question with '?', answer without '.') for every pair in `text`."""
    return [(q.strip(), a.strip()) for q, a in PAIR.findall(text) if q.strip() != "?" and a.strip()]


def load_pairs(path: str | None) -> tuple[Path, list[tuple[str, str]]]:
    file = DEFAULT_PATH if path is None else Path(path).expanduser().resolve()
    if not file.is_file():
        raise DataError(f"{file}: text_qa data file not found; set task.path to a text file ({FORMAT}); "
                        "relative paths resolve against the current directory")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{file}: cannot read it as UTF-8 text ({e}); text_qa needs a text file, {FORMAT}") from e
    if not text.strip():
        raise DataError(f"{file}: the text_qa data file is empty; {FORMAT}")
    pairs = parse_pairs(text)
    if not pairs:
        raise DataError(f"{file}: no question/answer pair found; {FORMAT}")
    return file, pairs


@register_task("text_qa")
class TextQA(Task):
    """Answer a question, one answer character per question position."""

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        self.path, self.pairs = load_pairs(getattr(config, "path", None))
        tokenizer = getattr(config, "tokenizer", None)  # a stand-in config may lack the field
        self.tokenizer = load_tokenizer(tokenizer) if tokenizer else None
        self.vocab = PieceVocab(self.tokenizer) if tokenizer else CharVocab("".join(q + a for q, a in self.pairs))
        self.spec = TaskSpec(vocab=len(self.vocab), classes=len(self.vocab))
        order = torch.randperm(len(self.pairs), generator=torch.Generator().manual_seed(seed)).tolist()
        held = max(1, len(order) // 10) if len(order) > 1 else 0
        self.splits = {TRAIN: order[held:], HELD_OUT: order[:held]}
        self.max_answer = max(len(self.vocab.encode(a)) for _, a in self.pairs)
        bad = [d for d in config.eval if d not in self.splits]
        if bad:
            raise DataError(f"task.eval {list(config.eval)}: text_qa difficulties select the split "
                            "(0 = train, 1 = held-out); set task.eval: [0, 1]")

    def sample_difficulty(self, generator: torch.Generator) -> int:
        return TRAIN

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        if difficulty not in self.splits:
            raise DataError(f"text_qa: difficulty {difficulty} is not a split; use 0 = train, 1 = held-out")
        split = self.splits[difficulty]
        if not split:
            raise DataError(f"{self.path}: only {len(self.pairs)} pair(s), too few for a held-out split; "
                            "add at least 2 pairs (10+ for a useful 90/10 split)")
        # whole permutations of the split, so n >= len(split) covers every example evenly
        reps = math.ceil(n / len(split))
        idx = torch.cat([torch.randperm(len(split), generator=generator) for _ in range(reps)])[:n].tolist()
        qs = [self.vocab.encode(self.pairs[split[i]][0]) for i in idx]
        ans = [self.vocab.encode(self.pairs[split[i]][1]) + [self.vocab.END] for i in idx]
        return self._pack(qs, ans, difficulty)

    def _pack(self, qs: list[list[int]], ans: list[list[int] | None], difficulty: int | None,
              length: int = 0) -> Batch:
        s = max([length] + [len(q) for q in qs] + [len(a) for a in ans if a is not None])
        x = torch.full((len(qs), s), self.vocab.PAD)
        y = torch.full((len(qs), s), IGNORE)
        mask = torch.zeros(len(qs), s, dtype=torch.bool)
        for i, (q, a) in enumerate(zip(qs, ans)):
            x[i, :len(q)], mask[i, :len(q)] = torch.tensor(q), True
            if a is not None:
                y[i, :len(a)] = torch.tensor(a)
        return Batch({"text": x}, y, masks={"text": mask}, difficulty=difficulty)

    def encode(self, text: str) -> Batch:
        """A question ('?' added if missing), or a whole 'question? answer.' pair to also get the target.

        The input is padded so that the longest answer in the data file fits.
        """
        text = text.strip()
        if not text or text == "?":
            raise DataError(f"--input {text!r}: text_qa takes a question, e.g. 'what is 3 plus 4?'")
        pairs = parse_pairs(text)
        if len(pairs) == 1 and PAIR.fullmatch(text):
            q, a = pairs[0]
            answer = self.vocab.encode(a) + [self.vocab.END]
        else:
            q, answer = (text if text.endswith("?") else text + "?"), None
        return self._pack([self.vocab.encode(q)], [answer], None, length=self.max_answer + 1)

    def decode(self, prediction: Tensor) -> str:
        return self.vocab.decode(prediction.flatten().tolist())
