"""task.data: examples read from the JSON-lines files `th1nker data prepare` writes."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.errors import DataError
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.train.run import train_recipe

from conftest import TINY

runner = CliRunner()
QUICK = ["tracking.enabled=false", "train.max_updates=3", "train.checkpoint_every=3", "eval.steps=[2]"]


@pytest.fixture
def project(tmp_path):
    """proj/tiny.yaml reading proj/data/{train,eval_8}.jsonl (relative paths), the data prepared from it."""
    proj = tmp_path / "proj"
    proj.mkdir()
    recipe = yaml.safe_load(TINY)
    (proj / "gen.yaml").write_text(yaml.safe_dump(recipe))
    res = runner.invoke(app, ["data", "prepare", str(proj / "gen.yaml"), "--out", str(proj / "data"),
                              "--train-examples", "64"])
    assert res.exit_code == 0, res.output
    recipe["task"]["data"] = {"train": "data/train.jsonl", "eval": {8: "data/eval_8.jsonl"}}
    (proj / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    return proj


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_rows(path, rows_):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows_))


def trained_weights(recipe, out):
    train_recipe(recipe, QUICK, out, resume=False)
    return load_file(out / "checkpoints" / "step_00000003" / "model.safetensors")


def test_paths_resolve_against_the_recipe_folder(project, tmp_path):
    data = load_recipe(project / "tiny.yaml").task.data  # the working directory is tmp_path, not proj
    assert data.train == str(project / "data" / "train.jsonl")
    assert data.eval == {8: str(project / "data" / "eval_8.jsonl")}


def test_training_follows_the_train_file(project, tmp_path):
    recipe = project / "tiny.yaml"
    first = trained_weights(recipe, tmp_path / "a")
    again = trained_weights(recipe, tmp_path / "b")
    assert all(torch.equal(first[k], again[k]) for k in first)  # same data, same seed: identical weights
    train = project / "data" / "train.jsonl"
    edited = rows(train)
    for row in edited:  # every answer flipped
        row["target"] = [1 - t for t in row["target"]]
    write_rows(train, edited)
    changed = trained_weights(recipe, tmp_path / "c")
    assert any(not torch.equal(first[k], changed[k]) for k in first)


def test_train_batches_come_from_the_file(project):
    recipe = load_recipe(project / "tiny.yaml")
    task = make_task(recipe.task, recipe.seed)
    lines = {tuple(r["inputs"]["text"]): r["target"] for r in rows(project / "data" / "train.jsonl")}
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        batch = task.train_batch(16, g)
        assert batch.inputs["text"].shape[1] == batch.difficulty
        for x, y in zip(batch.inputs["text"].tolist(), batch.target.tolist()):
            assert lines[tuple(x)] == y


def test_eval_file_is_the_evaluation_set_and_other_difficulties_are_generated(project):
    eval_8 = project / "data" / "eval_8.jsonl"
    write_rows(eval_8, rows(eval_8)[:5])
    recipe = load_recipe(project / "tiny.yaml")
    task = make_task(recipe.task, recipe.seed)
    assert task.eval_batch(8).inputs["text"].tolist() == [r["inputs"]["text"] for r in rows(eval_8)]
    assert len(task.eval_batch(8, 2)) == 2
    generated = make_task(load_recipe(project / "gen.yaml").task, recipe.seed)
    assert torch.equal(task.eval_batch(12).inputs["text"], generated.eval_batch(12).inputs["text"])


@pytest.mark.parametrize("line, expected", [
    ("{not json", "line 2: not valid JSON"),
    ('{"difficulty": 4, "inputs": {"text": [0, 1, 2, 0]}, "target": [0, 1, 1, 1]}', "line 2: inputs.text holds ids"),
    ('{"difficulty": 4, "inputs": {"text": [[0, 1], [1]]}, "target": [0, 1]}', "line 2: 'inputs.text' is not a rect"),
    ('{"difficulty": 4, "target": [0, 1]}', "line 2: needs 'inputs'"),
])
def test_a_bad_line_is_named_with_its_file_and_line(project, line, expected):
    train = project / "data" / "train.jsonl"
    write_rows(train, rows(train)[:1])
    train.write_text(train.read_text() + line + "\n")
    res = runner.invoke(app, ["train", str(project / "tiny.yaml"), "--set", "tracking.enabled=false"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert f"{train}, {expected}" in " ".join(res.output.split())


def test_missing_files_and_unevaluated_difficulties_are_user_errors(project):
    (project / "data" / "train.jsonl").unlink()
    res = runner.invoke(app, ["train", str(project / "tiny.yaml"), "--set", "tracking.enabled=false"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    message = " ".join(res.output.split())
    assert f"{project / 'data' / 'train.jsonl'}: data file not found" in message and "th1nker data prepare" in message
    recipe = load_recipe(project / "tiny.yaml", ["task.data.train=null", "task.data.eval={99: data/eval_8.jsonl}"])
    with pytest.raises(DataError, match=r"difficulties \[99\] that task.eval \[8, 12\] does not evaluate"):
        make_task(recipe.task, recipe.seed)
