"""`th1nker runs`: recent runs from a real MLflow sqlite store, made by tiny training runs."""

import os
from pathlib import Path

import yaml
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.io import file_digest
from th1nker.train.run import train_recipe

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


def test_runs_lists_the_newest_runs_with_their_data_and_accuracy(tiny_recipe, tmp_path):
    res = runner.invoke(app, ["data", "prepare", str(tiny_recipe), "--out", "data", "--train-examples", "32"])
    assert res.exit_code == 0, res.output
    files = yaml.safe_load(tiny_recipe.read_text())
    files["name"] = "tiny_files"
    files["task"]["data"] = {"train": "data/train.jsonl"}
    (tmp_path / "files.yaml").write_text(yaml.safe_dump(files))
    quick = ["train.max_updates=2", "eval.steps=[2,4,8]"]
    generated = train_recipe(tiny_recipe, quick, tmp_path / "a", resume=False)
    from_files = train_recipe(tmp_path / "files.yaml", quick, tmp_path / "b", resume=False)

    res = runner.invoke(app, ["runs"], env=WIDE)
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if "tiny" in line]
    assert [line.split("│")[3].strip() for line in lines] == ["tiny_files", "tiny"]  # newest first
    digest = file_digest(tmp_path / "data" / "train.jsonl", "md5")[:8]
    for line, result, data in ((lines[0], from_files, digest), (lines[1], generated, "generated")):
        cells = [c.strip() for c in line.split("│")[1:-1]]
        assert cells[4:7] == [data, "2", f"{result['train']['final_loss']:.4f}"]
        # accuracy per difficulty (8, 12) at the trained 4 steps, not at the last evaluated step
        assert cells[7:] == [f"{result['accuracy'][d]['4']:.3f}" for d in ("8", "12")]
    assert "acc d8" in res.output and "acc d12" in res.output

    res = runner.invoke(app, ["runs", "--limit", "1"], env=WIDE)
    assert res.exit_code == 0 and "tiny_files" in res.output and "│ tiny " not in res.output


def test_runs_names_a_missing_store_or_experiment(tiny_recipe, tmp_path):
    res = runner.invoke(app, ["runs"])
    assert res.exit_code == 2 and "no MLflow store there" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "mlflow.db").exists()  # looking does not create a store
    train_recipe(tiny_recipe, ["train.max_updates=1", "eval.steps=[1]"], tmp_path / "run", resume=False)
    res = runner.invoke(app, ["runs", "--experiment", "nope"], env=WIDE)
    assert res.exit_code == 2 and "no such experiment" in res.output and "known: Default, th1nker" in res.output
    assert Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")).is_file()
