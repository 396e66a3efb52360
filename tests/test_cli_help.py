"""Every `th1nker` command's --help ends with one example, and the examples parse (the quick ones run)."""

import shlex

import pytest
import typer
from typer.testing import CliRunner

from th1nker.cli import app

from conftest import ROOT

runner = CliRunner()
ROOT_COMMAND = typer.main.get_command(app)
# examples that need no trained model and finish in seconds: run for real
QUICK = ("th1nker validate", "th1nker blocks", "th1nker graph", "th1nker tokenizer train", "th1nker tokenizer encode",
         "th1nker data prepare")


def commands(cmd=ROOT_COMMAND, path=("th1nker",)):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from commands(sub, (*path, name))


def example(path) -> list[str]:
    res = runner.invoke(app, [*path[1:], "--help"], env={"COLUMNS": "400"}, prog_name="th1nker")
    assert res.exit_code == 0, res.output
    last = [line.strip(" │") for line in res.output.splitlines() if line.strip(" │")][-1]
    assert last.startswith("Example: th1nker"), f"{' '.join(path)} --help ends with {last!r}"
    return shlex.split(last.removeprefix("Example: "))


@pytest.mark.parametrize("path, cmd", list(commands()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_help_ends_with_an_example_that_parses(path, cmd):
    tokens = example(path)
    if hasattr(cmd, "commands"):  # a group's example runs one of its commands
        assert tuple(tokens[:len(path)]) == path and tokens[len(path)] in cmd.commands
    else:
        assert tuple(tokens[:len(path)]) == path
        cmd.make_context(path[-1], tokens[len(path):])  # raises on an unknown option, bad value or missing argument


def test_the_quick_examples_run(tmp_path):
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    (tmp_path / "th1nker").symlink_to(ROOT / "th1nker")
    for path, _ in commands():
        if " ".join(path) in QUICK:
            tokens = example(path)
            res = runner.invoke(app, tokens[1:])
            assert res.exit_code == 0, (tokens, res.output)
    assert (tmp_path / "graph.png").is_file() and (tmp_path / "data" / "pipeline" / "train.jsonl").is_file()
