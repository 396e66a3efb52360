"""`th1nker data`: export a recipe's task data and turn evaluation results into plot tables (for DVC)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import typer

from th1nker.errors import DataError

PREPARE = "Example: th1nker data prepare recipes/pipeline.yaml --out data/pipeline --corpus data/corpus.txt"


def register(app: typer.Typer, user_errors) -> None:
    """Add the `data` command group to the th1nker app."""
    data = typer.Typer(help="Export task data and evaluation plot tables (the DVC pipeline's stages).",
                       no_args_is_help=True, epilog=PREPARE)

    @data.command("prepare", epilog=PREPARE)
    @user_errors
    def prepare(recipe: Path,
                out: Path = typer.Option(..., help="data folder to (re)write, e.g. data/pipeline"),
                train_examples: int = typer.Option(1024, min=0, help="training examples in train.jsonl"),
                corpus: Optional[Path] = typer.Option(None, help="also copy the bundled tokenizer corpus here"),
                set_: Optional[list[str]] = typer.Option(None, "--set", help="override a recipe field (repeatable)")):
        """Write the recipe's evaluation sets and a training sample as JSON lines, plus manifest.json."""
        from th1nker.io import atomic_write
        from th1nker.recipe import load_recipe
        from th1nker.tasks import make_task
        from th1nker.tasks.export import export_task

        r = load_recipe(recipe, set_)
        generated = r.task.model_copy(update={"data": None})  # the files task.data names are what this writes
        manifest = export_task(make_task(generated, r.seed), out, train_examples)
        typer.echo(f"wrote {out}: " + ", ".join(f"{name} ({n})" for name, n in manifest["examples"].items()))
        if corpus is not None:
            from th1nker.omni.corpus import CORPUS_PATH

            atomic_write(corpus, lambda tmp: shutil.copyfile(CORPUS_PATH, tmp))
            typer.echo(f"wrote {corpus} (copy of {CORPUS_PATH.name})")

    @data.command("corpus", epilog="Example: th1nker data corpus --out data/code")
    @user_errors
    def corpus(out: Path = typer.Option(..., help="folder for train.txt, held_out.txt, manifest.json"),
               max_bytes: int = typer.Option(8_000_000, min=1, help="stop adding files at this many bytes"),
               held_out_percent: int = typer.Option(10, min=1, max=50, help="share of files held out"),
               root: Optional[Path] = typer.Option(None, help="folder of .py files (default: this Python's stdlib)")):
        """Real text written by people, offline: the Python stdlib's sources, split by file."""
        from th1nker.tasks.code_corpus import build_code_corpus

        m = build_code_corpus(out, max_bytes, held_out_percent, root)
        typer.echo(f"wrote {out} (Python {m['python']}): " + ", ".join(
            f"{name} {len(s['files'])} files {s['bytes']} bytes" for name, s in m["splits"].items()))

    @data.command("plot-accuracy", epilog="Example: th1nker data plot-accuracy metrics.json --out plots/accuracy")
    @user_errors
    def plot_accuracy(metrics: Path = typer.Argument(..., help="output of `th1nker eval --json`"),
                      out: Path = typer.Option(..., help="folder for difficulty_<d>.csv, e.g. plots/accuracy")):
        """One CSV per difficulty (steps, accuracy) from an evaluation result, for `dvc plots show`."""
        from th1nker.tasks.export import export_accuracy

        try:
            result = json.loads(metrics.read_text())
        except FileNotFoundError:
            raise DataError(f"{metrics}: file not found; write it with `th1nker eval ... --json > {metrics}`") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{metrics}: not valid JSON ({e}); expected the output of `th1nker eval --json`") from None
        paths = export_accuracy(result, out, str(metrics))
        typer.echo(f"wrote {', '.join(map(str, paths))}")

    app.add_typer(data, name="data")
