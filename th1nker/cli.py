"""The `th1nker` command line: validate, blocks, graph, train, eval, think (and sub-apps)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from th1nker.cli_errors import err_console, user_errors
from th1nker.errors import Th1nkerError

app = typer.Typer(help="Th1nker: latent-step models from YAML recipes.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False,
                  epilog="Example: th1nker train recipes/multistep.yaml")
console = Console()

SetOpt = typer.Option(None, "--set", help="override a recipe field: --set train.max_updates=10 (repeatable)")




@app.command(epilog="Example: th1nker validate recipes/multistep.yaml --set train.max_updates=100")
@user_errors
def validate(recipe: Path, set_: Optional[list[str]] = SetOpt):
    """Validate a recipe and print it fully resolved."""
    from th1nker.recipe import load_recipe

    r = load_recipe(recipe, set_)
    console.print(r.to_yaml().rstrip("\n"), markup=False, highlight=False)
    err_console.print(f"[green]ok[/green] {recipe}")


@app.command(epilog="Example: th1nker blocks")
@user_errors
def blocks():
    """List the registered block kinds with their config fields."""
    from th1nker.registry import block_class, kinds

    table = Table(title="Th1nker blocks", show_lines=True)
    table.add_column("kind", style="bold cyan")
    table.add_column("what it does")
    table.add_column("fields (type = default: description)")
    for kind in kinds():
        cls = block_class(kind)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        fields = []
        for name, f in cls.Config.model_fields.items():
            if name == "kind":
                continue
            ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
            fields.append(f"[bold]{name}[/bold]: {ann} = {f.default!r}" + (f"  {f.description}" if f.description else ""))
        table.add_row(kind, doc, "\n".join(fields))
    console.print(table)


@app.command(epilog="Example: th1nker graph recipes/multistep.yaml --out graph.png")
@user_errors
def graph(recipe: Path, out: Optional[Path] = typer.Option(None, help="write the graph as PNG here"),
          set_: Optional[list[str]] = SetOpt):
    """Print the recipe's block graph as Mermaid (and write a PNG with --out)."""
    from th1nker.graph import BlockGraph
    from th1nker.recipe import load_recipe

    g = BlockGraph(load_recipe(recipe, set_))
    console.print(g.to_mermaid(), markup=False, highlight=False)
    if out is not None:
        g.draw(out)
        err_console.print(f"wrote {out}")


@app.command(epilog="Example: th1nker train recipes/multistep.yaml --out runs/ms")
@user_errors
def train(recipe: Path, set_: Optional[list[str]] = SetOpt,
          out: Optional[Path] = typer.Option(None, help="run directory (default runs/<name>/<timestamp>)"),
          resume: bool = typer.Option(False, help="continue from the last checkpoint in --out"),
          nproc: Optional[int] = typer.Option(None, min=1, help="train data-parallel on N local processes "
                                              "(runs torchrun; for several machines call torchrun yourself)")):
    """Train a recipe; writes recipe.yaml, checkpoints/, metrics.json and eval.png into the run directory."""
    if nproc is not None:
        from th1nker.recipe import load_recipe
        from th1nker.train.distributed import launch, local_batch_size

        local_batch_size(load_recipe(recipe, set_).train.batch_size, nproc)  # report a bad split once, here
        args = ["train", str(recipe), *(a for s in set_ or [] for a in ("--set", s))]
        args += (["--out", str(out)] if out else []) + (["--resume"] if resume else [])
        raise typer.Exit(launch(nproc, args))
    from th1nker.train.run import train_recipe

    train_recipe(recipe, set_ or [], out, resume)


@app.command("eval", epilog="Example: th1nker eval recipes/multistep.yaml --checkpoint runs/ms --steps 5,10,20,40,80")
@user_errors
def eval_(recipe: Path, checkpoint: Path = typer.Option(..., help="a run directory or checkpoint directory"),
          steps: Optional[str] = typer.Option(None, help="comma-separated step counts, e.g. 5,10,20,40,80"),
          set_: Optional[list[str]] = SetOpt,
          halt: Optional[str] = typer.Option(None, help="stop each example once a rule holds: RULE:THRESHOLD with "
                                             "RULE max_prob, entropy, kl or head (e.g. max_prob:0.99); `none` = never"),
          as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout")):
    """Exact-match accuracy per difficulty per number of thinking steps."""
    from th1nker.train.evaluate import evaluate_checkpoint, print_accuracy

    step_list = _parse_steps(steps)
    result = evaluate_checkpoint(recipe, checkpoint, [*(set_ or []), *_halt_overrides(halt)], step_list)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        print_accuracy(result, console)


@app.command(epilog="Example: th1nker think recipes/multistep.yaml --checkpoint runs/ms --input 0110100111 "
             "--steps 40 --trace")
@user_errors
def think(recipe: Path, checkpoint: Optional[Path] = typer.Option(None, help="run or checkpoint directory"),
          input_: str = typer.Option(..., "--input", help="the example, as the task writes it (e.g. 0110)"),
          steps: Optional[int] = typer.Option(None, help="thinking steps (default: the recipe's)"),
          trace: bool = typer.Option(False, help="print the blocks run and the prediction after each step"),
          speak: Optional[Path] = typer.Option(None, help="write the spoken answer to this wav (output_speech)"),
          set_: Optional[list[str]] = SetOpt):
    """Run the model on one example and show how its answer develops."""
    from th1nker.train.evaluate import think_one

    think_one(recipe, checkpoint, input_, steps, trace, set_ or [], console, speak=speak)


def _halt_overrides(text: str | None) -> list[str]:
    """--halt RULE:THRESHOLD as recipe overrides of eval.halt (the schema checks them)."""
    if text is None:
        return []
    rule, _, threshold = text.partition(":")
    if rule != "none" and not threshold:
        raise Th1nkerError(f"--halt {text!r}: write RULE:THRESHOLD, e.g. --halt max_prob:0.99 or --halt kl:1e-3")
    return [f"eval.halt.rule={rule}"] + ([f"eval.halt.threshold={threshold}"] if threshold else [])


def _parse_steps(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise Th1nkerError(f"--steps {text!r}: expected comma-separated whole numbers, e.g. 5,10,20") from None
    if not steps or min(steps) < 1:
        raise Th1nkerError(f"--steps {text!r}: step counts must be at least 1")
    return steps


# Commands that live beside their feature: a module with `register(app)` adds commands, a module with
# a typer `app` becomes a command group named after the second field.
EXTENSIONS = (("th1nker.cli_tokenizer", "tokenizer"), ("th1nker.cli_memory", "memory"), ("th1nker.rl.cli", None),
              ("th1nker.cli_data", None), ("th1nker.cli_speech", None), ("th1nker.cli_runs", None),
              ("th1nker.cli_generate", None), ("th1nker.cli_convert", None))


def _mount_optional_apps() -> None:
    import importlib

    for module_name, group in EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue
        if hasattr(module, "register"):
            module.register(app, user_errors)
        else:
            app.add_typer(module.app, name=group)


# Examples for the commands whose modules live outside th1nker/ (every --help ends with one)
EPILOGS = {"rl": "Example: th1nker rl recipes/rl.yaml --checkpoint runs/rl/sup"}


def _add_epilogs() -> None:
    for info in app.registered_commands:
        info.epilog = info.epilog or EPILOGS.get(info.name or info.callback.__name__)


_mount_optional_apps()
_add_epilogs()


def main():
    app()


if __name__ == "__main__":
    main()
