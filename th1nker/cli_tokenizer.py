"""`th1nker tokenizer`: train a sentencepiece BPE tokenizer and try it on text."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import typer

from th1nker.errors import Th1nkerError

if TYPE_CHECKING:
    from th1nker.omni.tokenizer import Tokenizer

TRAIN = "Example: th1nker tokenizer train th1nker/omni/data/corpus.txt --vocab 1000 --out tok.model"
app = typer.Typer(help="Train and inspect sentencepiece BPE tokenizers.", no_args_is_help=True, epilog=TRAIN)


@app.command(epilog=TRAIN)
def train(corpus: Path = typer.Argument(..., help="Text file, one sentence a line."),
          vocab: int = typer.Option(5000, "--vocab", help="Largest vocabulary size."),
          out: Path = typer.Option(Path("tok.model"), "--out", help="Where to write the .model."),
          keep_whitespace: bool = typer.Option(False, "--keep-whitespace",
                                               help="code: keep spaces exactly (decode(encode(x)) == x)")):
    """Train a BPE tokenizer on CORPUS."""
    from th1nker.omni.tokenizer import Tokenizer

    tokenizer = _run(lambda: Tokenizer.train(corpus, vocab, out, keep_whitespace))
    sample = next(line for line in corpus.read_text().splitlines() if line.strip())
    typer.echo(f"wrote {out}: {tokenizer.vocab_size} pieces (asked for {vocab}), pad/unk/bos/eos = "
               f"{tokenizer.pad_id}/{tokenizer.unk_id}/{tokenizer.bos_id}/{tokenizer.eos_id}")
    typer.echo(f"first line: {len(sample)} chars -> {len(tokenizer.encode(sample))} tokens")


@app.command(epilog='Example: th1nker tokenizer encode "the cat sat on the mat" --model tok.model')
def encode(text: str = typer.Argument(..., help="Text to encode."),
           model: Path = typer.Option(Path("tok.model"), "--model", help="A trained .model.")):
    """Print the ids and pieces of TEXT."""
    from th1nker.omni.tokenizer import Tokenizer

    tokenizer = _run(lambda: Tokenizer(model))
    ids = tokenizer.encode(text)
    typer.echo(" ".join(map(str, ids)))
    typer.echo(" ".join(f"[{tokenizer.decode([i])}]" for i in ids))


def _run(make: Callable[[], "Tokenizer"]) -> "Tokenizer":
    try:
        return make()
    except Th1nkerError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
