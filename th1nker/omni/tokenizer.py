"""A sentencepiece BPE tokenizer with fixed special ids: pad 0, unk 1, bos 2, eos 3."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import sentencepiece as spm

from th1nker.errors import DataError


class Tokenizer:
    """Encode text to ids and back with a trained sentencepiece model."""

    def __init__(self, model_path: str | Path):
        path = Path(model_path)
        if not path.is_file():
            raise DataError(f"tokenizer model {path} does not exist")
        self._sp = _load(path.read_bytes(), str(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "embedded tokenizer") -> "Tokenizer":
        """Load from `to_bytes()` output, e.g. a tokenizer embedded in a checkpoint."""
        tokenizer = cls.__new__(cls)
        tokenizer._sp = _load(data, source)
        return tokenizer

    def to_bytes(self) -> bytes:
        """The serialized model proto."""
        return self._sp.serialized_model_proto()

    @classmethod
    def train(cls, corpus_path: str | Path, vocab_size: int, out_path: str | Path,
              keep_whitespace: bool = False) -> "Tokenizer":
        """Train a BPE model on a text file (one sentence a line) and write it to `out_path`.

        `vocab_size` is an upper bound: a small corpus yields fewer pieces instead of failing.
        `keep_whitespace` (code): no normalisation, runs of spaces kept and learnable as pieces, so
        decode(encode(line)) == line.
        """
        exact = dict(normalization_rule_name="identity", remove_extra_whitespaces=False,
                     allow_whitespace_only_pieces=True, split_digits=True, input_sentence_size=300_000,
                     shuffle_input_sentence=True) if keep_whitespace else {}
        spm.set_random_generator_seed(0)  # sentence sampling of large corpora: the same pieces every run
        corpus, out = Path(corpus_path), Path(out_path)
        if not corpus.is_file() or corpus.stat().st_size == 0:
            raise DataError(f"tokenizer corpus {corpus} is missing or empty")
        out.parent.mkdir(parents=True, exist_ok=True)
        # Train beside the target so that os.replace stays on one file system.
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".tokenizer-") as tmp:
            try:
                spm.SentencePieceTrainer.train(
                    input=str(corpus), model_prefix=os.path.join(tmp, "tok"), vocab_size=vocab_size,
                    model_type="bpe", pad_id=0, unk_id=1, bos_id=2, eos_id=3,
                    hard_vocab_limit=False, character_coverage=1.0, minloglevel=2, **exact)
            except RuntimeError as e:  # e.g. a vocabulary smaller than the corpus' alphabet
                raise DataError(f"cannot train a tokenizer on {corpus}: {e}") from e
            os.replace(os.path.join(tmp, "tok.model"), out)
        return cls(out)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self._sp.encode(text)
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def encode_lines(self, lines: list[str], eos: bool = False) -> list[list[int]]:
        """`encode` of many lines at once (sentencepiece's batch call)."""
        return [ids + [self.eos_id] * eos for ids in self._sp.encode(lines)]

    def decode(self, ids) -> str:
        """Text of `ids` (a list or a 1-D tensor); special ids decode to nothing."""
        return self._sp.decode([int(i) for i in ids])

    @property
    def vocab_size(self) -> int:
        return self._sp.vocab_size()

    @property
    def pad_id(self) -> int:
        return self._sp.pad_id()

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()


def _load(data: bytes, source: str) -> spm.SentencePieceProcessor:
    hint = "retrain it with `th1nker tokenizer train`"
    if not data:
        raise DataError(f"tokenizer model {source} is empty; {hint}")
    try:
        return spm.SentencePieceProcessor(model_proto=data)
    except RuntimeError as e:
        raise DataError(f"{source} is not a sentencepiece model ({e}); {hint}") from e
