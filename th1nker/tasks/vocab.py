"""A sentencepiece tokenizer as a task vocabulary, interchangeable with text_qa's CharVocab."""

from __future__ import annotations

from pathlib import Path

from th1nker.errors import DataError
from th1nker.omni.tokenizer import Tokenizer


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The sentencepiece model task.tokenizer names (relative to the current directory)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise DataError(f"{file}: task.tokenizer not found; train one with "
                        "`th1nker tokenizer train CORPUS --vocab 5000 --out tok.model` and point task.tokenizer at it")
    return Tokenizer(file)


class PieceVocab:
    """Sentencepiece pieces with CharVocab's interface: PAD, UNK, END (the eos id), encode, decode."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.PAD, self.UNK, self.END = tokenizer.pad_id, tokenizer.unk_id, tokenizer.eos_id

    def __len__(self) -> int:
        return self.tokenizer.vocab_size

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        """The text of the pieces up to the first END."""
        ids = [int(i) for i in ids]
        return self.tokenizer.decode(ids[:ids.index(self.END)] if self.END in ids else ids)
