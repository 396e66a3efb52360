"""`th1nker validate` on recipe files that cannot be read as YAML: one message, exit 2, no traceback."""

import pytest
import yaml
from typer.testing import CliRunner

from th1nker.cli import app

from conftest import TINY

runner = CliRunner()


def _validate(path) -> str:
    res = runner.invoke(app, ["validate", str(path)], env={"COLUMNS": "300"})
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    return res.output


def test_a_duplicated_key_names_the_key_and_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(TINY.replace("  batch_size: 8\n", "  batch_size: 8\n  batch_size: 16\n"))
    line = TINY.splitlines().index("  batch_size: 8") + 1
    assert (f"{path}: line {line + 1}: key 'batch_size' is given twice in one mapping (first on line {line}); "
            "keep one of them") in _validate(path)
    path.write_text(TINY.replace("{kind: output_tokens}", "{kind: output_tokens, kind: process}"))
    assert "key 'kind' is given twice" in _validate(path)


def test_a_merge_key_may_still_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text(TINY.replace("optimizer: {lr: 0.003, warmup: 2}", "optimizer: {<<: {lr: 0.01, warmup: 2}, lr: 0.003}"))
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 0, res.output
    optimizer = yaml.safe_load(res.stdout)["train"]["optimizer"]
    assert (optimizer["lr"], optimizer["warmup"]) == (0.003, 2)


@pytest.mark.parametrize("content, problem", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data (a NUL byte at offset 8), not a YAML recipe; "
                                               "pass the recipe's .yaml file, saved as UTF-8 text"),
    ("name: caf\u00e9\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 9); save the recipe as UTF-8"),
    (None, "a folder, not a recipe file; pass one of the .yaml files in it"),
])
def test_an_unreadable_recipe_file_gets_one_clear_message(content, problem, tmp_path):
    path = tmp_path / "recipe.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert f"{path}: {problem}" in _validate(path)
