"""Language modelling: predict each next token of a corpus window. Difficulty = window length in tokens.

The corpus (task.path; default: the bundled μOmni corpus) is tokenized once into one stream of ids, each
line ending with eos; its last 10% is held out for evaluation. A folder with train.txt and held_out.txt
(`th1nker data corpus`) is split by file instead, and every line is kept (eos = the newline), so the
streams are the text exactly and `bytes_per_token` converts nats per token to bits per byte. Input = a window of the stream, target =
the same window shifted by one (position i holds token i + 1), every position trained. Scoring judges
the last scored position, so accuracy is next-token accuracy after a full window. Tokenizer:
task.tokenizer, or a BPE tokenizer of at most 5000 pieces trained on the corpus (deterministic).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import Tensor

from th1nker.errors import DataError
from th1nker.omni.corpus import CORPUS_PATH
from th1nker.omni.tokenizer import Tokenizer
from th1nker.tasks import register_task
from th1nker.tasks.base import IGNORE, Batch, Task, TaskSpec
from th1nker.tasks.vocab import load_tokenizer

VOCAB = 5000  # μOmni tiny's vocabulary; a small corpus yields fewer pieces
HELD_OUT = 0.1


def read_corpus(path: str | Path | None, keep_blank: bool = False) -> tuple[Path, list[str]]:
    """The corpus file and its lines (the non-empty ones unless `keep_blank`)."""
    file = CORPUS_PATH if path is None else Path(path).expanduser().resolve()
    try:
        lines = [line for line in file.read_text(encoding="utf-8").split("\n") if keep_blank or line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{file}: cannot read the text_lm corpus ({e}); set task.path to a UTF-8 text file") from None
    if not lines:
        raise DataError(f"{file}: the text_lm corpus is empty; set task.path to a text file, one sentence a line")
    return file, lines


@register_task("text_lm")
class TextLM(Task):
    """Next-token prediction over windows of a tokenized corpus."""

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        path = getattr(config, "path", None)
        split = path is not None and Path(path).expanduser().is_dir()
        if split:
            self.path, lines = read_corpus(Path(path) / "train.txt", keep_blank=True)
            held = read_corpus(Path(path) / "held_out.txt", keep_blank=True)[1]
        else:
            self.path, lines = read_corpus(path)
        if getattr(config, "tokenizer", None):
            self.tokenizer = load_tokenizer(config.tokenizer)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                self.tokenizer = Tokenizer.train(self.path, VOCAB, Path(tmp) / "tok.model", keep_whitespace=split)
        stream = self._ids(lines)
        if split:
            self.train_ids, self.held_ids = stream, self._ids(held)
            held_bytes = sum(len(line.encode()) + 1 for line in held)
        else:
            cut = int(len(stream) * (1 - HELD_OUT))
            self.train_ids, self.held_ids = stream[:cut], stream[cut:]
            held_bytes = None
        # bytes of text per held-out token: bits per byte = nats per token / ln 2 / bytes_per_token
        self.bytes_per_token = held_bytes / len(self.held_ids) if held_bytes else None
        self.spec = TaskSpec(vocab=self.tokenizer.vocab_size, classes=self.tokenizer.vocab_size)
        longest = max([*config.train, *config.eval])
        if longest >= len(self.held_ids):
            raise DataError(f"{self.path}: {len(stream)} tokens leave {len(self.held_ids)} for evaluation, too few for "
                            f"windows of {longest}; use shorter windows (task.train, task.eval) or a longer corpus")

    def _ids(self, lines: list[str]) -> torch.Tensor:
        return torch.tensor([i for ids in self.tokenizer.encode_lines(lines, eos=True) for i in ids])

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        return self._windows(self.train_ids, n, difficulty, generator)

    def eval_batch(self, difficulty: int, n: int | None = None) -> Batch:
        """Fixed windows of the held-out tail of the corpus."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + difficulty + 7)
        return self._windows(self.held_ids, n or self.config.eval_examples, difficulty, g)

    @staticmethod
    def _windows(stream: Tensor, n: int, length: int, generator: torch.Generator) -> Batch:
        starts = torch.randint(0, len(stream) - length, (n,), generator=generator)
        ids = stream[starts[:, None] + torch.arange(length + 1)]
        return Batch({"text": ids[:, :-1]}, ids[:, 1:], difficulty=length)

    def score(self, prediction: Tensor, batch: Batch) -> Tensor:
        """Whether the last scored position's next token is right: (B,) bool."""
        target = batch.target
        last = (target != IGNORE).long().cumsum(dim=1).argmax(dim=1)
        rows = torch.arange(len(target), device=target.device)
        return prediction[rows, last] == target[rows, last]

    def encode(self, text: str) -> Batch:
        """Some text: every position but the last has its next token as target."""
        ids = self.tokenizer.encode(text.strip())
        if not ids:
            raise DataError(f"--input {text!r}: text_lm takes some text, e.g. 'Ada finds a red'")
        return Batch({"text": torch.tensor([ids])}, torch.tensor([ids[1:] + [IGNORE]]))

    def decode(self, prediction: Tensor) -> str:
        """The next token guessed at each position, as text."""
        return self.tokenizer.decode(prediction.flatten().tolist())
