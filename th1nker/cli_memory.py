"""`th1nker memory`: build a long-term memory from a corpus, query it, show its stats."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from th1nker.cli_errors import err_console, user_errors
from th1nker.errors import DataError

BUILD = "Example: th1nker memory build recipes/longterm.yaml --checkpoint runs/lt --corpus facts.txt --out mem"
app = typer.Typer(help="Long-term memory: build one from a corpus, query it, show its stats.", no_args_is_help=True,
                  pretty_exceptions_enable=False, epilog=BUILD)
console = Console()
SetOpt = typer.Option(None, "--set", help="override a recipe field: --set model.dim=32 (repeatable)")




@app.command(epilog=BUILD)
@user_errors
def build(recipe: Path, corpus: Path = typer.Option(..., help="the corpus file, in the task's corpus format"),
          out: Path = typer.Option(..., help="the memory folder (created; an existing one is continued)"),
          checkpoint: Optional[Path] = typer.Option(None, help="run or checkpoint folder (default: untrained weights)"),
          shard_rows: int = typer.Option(4096, help="blocks per shard (each shard is committed on its own)"),
          set_: Optional[list[str]] = SetOpt):
    """Compress a corpus into an append-only long-term memory; rerun the same command to continue it."""
    from th1nker.memory.build import build_store

    columns = (TextColumn("building"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task("build", total=None)
        store = build_store(recipe, corpus, out, checkpoint, set_ or [], shard_rows,
                            lambda done, total: progress.update(task, completed=done, total=total))
    console.print(f"{out}: {len(store)} blocks in {len(store.shards)} shards")


@app.command(epilog="Example: th1nker memory query mem --text abcd")
@user_errors
def query(store_dir: Path = typer.Argument(..., metavar="DIR"),
          text: Optional[str] = typer.Option(None, help="a question, as the task writes it; the model reads the memory"),
          key_index: Optional[int] = typer.Option(None, help="search with the key stored at this row (the mean "
                                                  "of its keys when it has several)"),
          k: int = typer.Option(8, help="rows to list (--key-index)"),
          steps: Optional[int] = typer.Option(None, help="thinking steps (--text; default: the recipe's)")):
    """Search a memory with a stored key, or let its model answer a question from it."""
    import torch

    from th1nker.memory import BlockCache, LongTermMemory

    if (text is None) == (key_index is None):
        raise typer.BadParameter("give exactly one of --text and --key-index")
    store = LongTermMemory(store_dir, cache=BlockCache(1024))
    if key_index is not None:
        keys = store.read("keys", torch.tensor([key_index])).view(store.key_vectors, store.key_dim)
        scores, rows = store.search(keys.mean(dim=0, keepdim=True), k)
        table = Table(title=f"rows nearest to row {key_index}'s key")
        for col in ("rank", "row", "score"):
            table.add_column(col, justify="right")
        for rank, (row, score) in enumerate(zip(rows[0].tolist(), scores[0].tolist()), 1):
            table.add_row(str(rank), str(row), f"{score:.4f}")
        console.print(table)
        return
    answer, reads = _answer(store, text, steps)
    for step, rows in enumerate(reads, 1):
        console.print(f"step {step}: read rows {rows}")
    console.print(f"answer: [bold]{answer}[/bold]   (cache: {store.cache.stats()})")


@app.command(epilog="Example: th1nker memory stats mem")
@user_errors
def stats(store_dir: Path = typer.Argument(..., metavar="DIR"),
          as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout")):
    """Rows, shards, widths, size and the build that made a memory (verifies every shard)."""
    from th1nker.memory import LongTermMemory

    store = LongTermMemory(store_dir)
    info = {"rows": len(store), "shards": len(store.shards), "key_dim": store.key_dim,
            "key_vectors": store.key_vectors, "value_dim": store.value_dim,
            "bytes": sum((store.path / s["file"]).stat().st_size for s in store.shards),
            "unlisted_files": store.orphans, "meta": store.meta}
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    table = Table(title=str(store_dir), show_header=False)
    for key, value in info.items():
        table.add_row(key, json.dumps(value, indent=1) if isinstance(value, (dict, list)) else str(value))
    console.print(table)


def _answer(store, text: str, steps: int | None) -> tuple[str, list[list[int]]]:
    """The model that built `store` answers `text` reading it: (answer, rows read at each step)."""
    import torch

    from th1nker.loop import StepEnd, think
    from th1nker.memory.build import check_recipe, load_for_memory
    from th1nker.train.evaluate import EVAL_SEED

    meta = store.meta
    if "recipe" not in meta or "block" not in meta:
        raise DataError(f"{store.path}: not built by `th1nker memory build` (no recipe in its manifest); use --key-index")
    checkpoint = Path(meta["checkpoint"]) if meta.get("checkpoint") else None
    check_recipe(store)
    recipe, task, model = load_for_memory(Path(meta["recipe"]), checkpoint, meta.get("overrides", []))
    g = torch.Generator().manual_seed(EVAL_SEED)
    reads, thought = [], None
    with torch.no_grad():
        batch = task.encode(text).to(next(model.parameters()).device)
        start = model.start(batch, g)
        start.longterm = store
        for event in think(model, batch, steps=steps or recipe.schedule.steps, generator=g, thought=start):
            if isinstance(event, StepEnd):
                thought = event.thought
                rows = thought.reads.get(meta["block"])
                reads.append(rows[0].tolist() if rows is not None else [])
    pred = model.prediction(thought)
    return (task.decode(pred[0].cpu()) if pred is not None else ""), reads
