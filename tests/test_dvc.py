"""The DVC pipeline (dvc.yaml) in a fresh git repository, and the `th1nker data` commands it runs."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from th1nker.cli import app

from conftest import ROOT

BIN = Path(sys.executable).parent
STAGES = ("prepare", "tokenizer", "train", "evaluate", "code_corpus", "code_tokenizer")
# recipes/pipeline.yaml made tiny: the same sections (dvc.yaml tracks them) and data files, far less work
TINY = {"task": {"train": [4, 8], "eval": [24, 48], "eval_examples": 16},
        "model": {"dim": 8}, "schedule": {"steps": 3},
        "train": {"max_updates": 2, "batch_size": 4, "checkpoint_every": 2, "tbptt": {"window": 3},
                  "optimizer": {"warmup": 1}},
        "eval": {"steps": [1, 3], "batch_size": 16}}
runner = CliRunner()


def deep_update(base: dict, new: dict) -> dict:
    for key, value in new.items():
        base[key] = deep_update(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


class Repo:
    """A temporary git repository holding the project's pipeline files; runs dvc and git in it."""

    def __init__(self, root: Path, mlflow_uri: str):
        self.root = root
        self.first_output = ""
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
                    "MLFLOW_TRACKING_URI": mlflow_uri}

    def run(self, *args: str) -> str:
        res = subprocess.run(args, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
        return res.stdout + res.stderr

    def dvc(self, *args: str) -> str:
        return self.run(str(BIN / "dvc"), *args)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)

    def edit_recipe(self, change: dict) -> None:
        path = self.root / "recipes" / "pipeline.yaml"
        path.write_text(yaml.safe_dump(deep_update(yaml.safe_load(path.read_text()), change), sort_keys=False))


def stages_run(output: str) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` ran; every other stage must say it was skipped."""
    ran = set(re.findall(r"Running stage '(\w+)'", output))
    skipped = set(re.findall(r"Stage '(\w+)' didn't change, skipping", output))
    assert ran | skipped == set(STAGES) and not ran & skipped, output
    return ran


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    """The project's pipeline files, a tiny recipe, committed, then `dvc repro` once.

    Every test below starts from, and leaves, a reproduced pipeline with nothing left to run.
    """
    tmp = tmp_path_factory.mktemp("dvc")
    root = tmp / "repo"
    root.mkdir()
    for folder in ("th1nker", "blocks", "memory", "recipes"):  # the stages' code and recipe dependencies
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (root / ".dvc").mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore"):  # as a clone has them
        shutil.copy(ROOT / name, root / name)
    dvc_yaml = root / "dvc.yaml"  # a small code corpus and vocabulary: the same stages, less work
    dvc_yaml.write_text(dvc_yaml.read_text().replace("--max-bytes 8000000", "--max-bytes 150000")
                        .replace("--vocab 1024", "--vocab 300"))
    r = Repo(root, f"sqlite:///{tmp / 'mlflow.db'}")
    r.edit_recipe(TINY)
    r.run("git", "init", "-q")
    r.run("git", "config", "user.name", "test")
    r.run("git", "config", "user.email", "test@example.com")
    r.commit("pipeline")
    r.first_output = r.dvc("repro")
    r.commit("reproduced")
    return r


def test_repro_runs_every_stage_and_writes_metrics_and_plots(repo):
    assert stages_run(repo.first_output) == set(STAGES)
    data = repo.root / "data"
    assert (data / "tokenizer.model").is_file() and (data / "pipeline" / "eval_48.jsonl").is_file()
    (workspace,) = json.loads(repo.dvc("metrics", "show", "--json")).values()
    accuracy = workspace["data"]["metrics.json"]["data"]["accuracy"]
    assert set(accuracy) == {"24", "48"}
    assert all(set(row) == {"1", "3"} and all(0 <= a <= 1 for a in row.values()) for row in accuracy.values())
    plots = json.loads(repo.dvc("plots", "show", "--json"))["data"]
    assert {"plots/accuracy/difficulty_24.csv", "plots/accuracy/difficulty_48.csv"} <= set(plots)
    (plot,) = plots["plots/accuracy/difficulty_24.csv"]  # accuracy against thinking steps, from the CSV
    assert plot["content"]["encoding"]["x"]["title"] == "thinking steps"
    assert [(v["steps"], v["accuracy"]) for v in plot["content"]["data"]["values"]] == [
        ("1", str(accuracy["24"]["1"])), ("3", str(accuracy["24"]["3"]))]
    table = (repo.root / "plots" / "accuracy" / "difficulty_24.csv").read_text()
    assert table == f"steps,accuracy\n1,{accuracy['24']['1']}\n3,{accuracy['24']['3']}\n"


def test_the_training_run_links_to_the_data_version_dvc_tracks(repo):
    from mlflow import MlflowClient

    client = MlflowClient(repo.env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("th1nker").experiment_id])
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())["stages"]["train"]["deps"]
    (md5,) = [dep["md5"] for dep in lock if dep["path"] == "data/pipeline/train.jsonl"]
    (used,) = run.inputs.dataset_inputs  # train.jsonl alone: the evaluation files are evaluate's
    assert used.dataset.name == "train.jsonl" and used.dataset.digest == md5
    assert json.loads(used.dataset.source)["uri"] == str((repo.root / "data/pipeline/train.jsonl").resolve())
    assert {t.key: t.value for t in used.tags}["mlflow.data.context"] == "training"
    assert run.data.tags["git_commit"] == repo.run("git", "rev-parse", "HEAD~1").strip()  # the commit reproduced


def test_second_repro_does_nothing(repo):
    out = repo.dvc("repro")
    assert stages_run(out) == set() and "Data and pipelines are up to date." in out


def test_changing_eval_steps_reruns_only_evaluate(repo):
    repo.edit_recipe({"eval": {"steps": [1, 2, 3]}})
    assert stages_run(repo.dvc("repro")) == {"evaluate"}
    diff = json.loads(repo.dvc("metrics", "diff", "--json"))["metrics.json"]
    assert "accuracy.24.2" in diff and diff["accuracy.24.2"]["old"] is None
    repo.commit("more eval steps")


def test_stages_depend_on_exactly_the_data_files_their_recipe_reads():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    data = yaml.safe_load((ROOT / "recipes" / "pipeline.yaml").read_text())["task"]["data"]
    in_root = lambda path: str((ROOT / "recipes" / path).resolve().relative_to(ROOT))  # noqa: E731
    files = lambda stage: {d for d in stages[stage]["deps"] if d.startswith("data/pipeline/")}  # noqa: E731
    assert files("train") == {in_root(data["train"])}
    assert "--set task.data.eval={}" in stages["train"]["cmd"]  # train leaves the evaluation files to evaluate
    assert files("evaluate") == {in_root(p) for p in data["eval"].values()}
    assert "data/pipeline" in stages["prepare"]["outs"]


def flip_answers(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row["target"] = [1 - t for t in row["target"]]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_editing_one_data_file_reruns_exactly_the_stages_that_read_it(repo):
    data = repo.root / "data" / "pipeline"
    flip_answers(data / "eval_24.jsonl")
    repo.dvc("commit", "--force", "prepare")  # keep the hand edit as prepare's output (else repro regenerates it)
    assert stages_run(repo.dvc("repro")) == {"evaluate"}
    flip_answers(data / "train.jsonl")
    repo.dvc("commit", "--force", "prepare")
    assert stages_run(repo.dvc("repro")) == {"train", "evaluate"}
    repo.commit("edited data")


def test_push_then_pull_in_a_fresh_clone_restores_everything_without_recomputing(repo, tmp_path):
    repo.dvc("remote", "add", "-d", "store", str(tmp_path / "dvc-store"))
    repo.commit("a DVC remote on the local filesystem")
    repo.dvc("push")
    clone = Repo(tmp_path / "clone", repo.env["MLFLOW_TRACKING_URI"])
    repo.run("git", "clone", "-q", str(repo.root), str(clone.root))
    assert not (clone.root / "runs").exists()
    clone.dvc("pull")
    out = clone.dvc("repro")
    assert stages_run(out) == set() and "Data and pipelines are up to date." in out
    checkpoint = (repo.root / "runs/pipeline/checkpoints/latest").read_text().strip()
    for path in ("data/pipeline/train.jsonl", "data/pipeline/eval_24.jsonl", "data/tokenizer.model", "metrics.json",
                 "plots/accuracy/difficulty_24.csv", f"runs/pipeline/checkpoints/{checkpoint}/model.safetensors"):
        assert (clone.root / path).read_bytes() == (repo.root / path).read_bytes(), path


def test_a_queued_grid_holds_one_experiment_per_combination(repo):
    out = repo.dvc("exp", "run", "--queue", "-S", "recipes/pipeline.yaml:train.max_updates=2,3",
                   "-S", "recipes/pipeline.yaml:model.dim=8,16")
    assert out.count("Queued experiment") == 4
    assert repo.dvc("queue", "status").count("Queued") == 4
    repo.dvc("queue", "remove", "--queued")


def test_exp_run_override_reruns_train_and_evaluate_and_tags_mlflow(repo):
    from mlflow import MlflowClient

    out = repo.dvc("exp", "run", "-S", "recipes/pipeline.yaml:train.max_updates=3", "--name", "tiny-exp")
    assert stages_run(out) == {"train", "evaluate"}
    assert yaml.safe_load((repo.root / "recipes" / "pipeline.yaml").read_text())["train"]["max_updates"] == 3
    client = MlflowClient(repo.env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("th1nker").experiment_id], "tags.dvc_exp = 'tiny-exp'")
    assert len(runs) == 1
    assert runs[0].data.tags["git_commit"] == repo.run("git", "rev-parse", "HEAD").strip()


def test_data_prepare_writes_the_evaluated_sets(tiny_recipe, tmp_path):
    from th1nker.recipe import load_recipe
    from th1nker.tasks import make_task

    res = runner.invoke(app, ["data", "prepare", str(tiny_recipe), "--out", "data/tiny", "--train-examples", "5",
                              "--corpus", "data/corpus.txt"])
    assert res.exit_code == 0, res.output
    recipe = load_recipe(tiny_recipe)
    task = make_task(recipe.task, recipe.seed)
    for d in recipe.task.eval:
        rows = [json.loads(line) for line in (tmp_path / "data" / "tiny" / f"eval_{d}.jsonl").read_text().splitlines()]
        batch = task.eval_batch(d)
        assert [r["inputs"]["text"] for r in rows] == batch.inputs["text"].tolist()
        assert [r["target"] for r in rows] == batch.target.tolist()
    train = (tmp_path / "data" / "tiny" / "train.jsonl").read_text().splitlines()
    assert len(train) == 5 and all(4 <= json.loads(line)["difficulty"] <= 8 for line in train)
    manifest = json.loads((tmp_path / "data" / "tiny" / "manifest.json").read_text())
    assert manifest["examples"] == {"eval_8.jsonl": 32, "eval_12.jsonl": 32, "train.jsonl": 5}
    assert (tmp_path / "data" / "corpus.txt").stat().st_size > 0


def test_data_commands_refuse_foreign_folders_and_bad_input(tiny_recipe, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    res = runner.invoke(app, ["data", "prepare", str(tiny_recipe), "--out", "mine"])
    assert res.exit_code == 2 and "was not written by `th1nker data`" in res.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "bad.json").write_text('{"steps": [1]}')
    res = runner.invoke(app, ["data", "plot-accuracy", "bad.json", "--out", "plots"])
    assert res.exit_code == 2 and "bad.json" in res.output and "th1nker eval --json" in res.output


def test_plot_accuracy_writes_one_table_per_difficulty(tmp_path):
    out = tmp_path / "plots" / "accuracy"
    for accuracy in ({"96": {"5": 0.0}}, {"24": {"10": 0.5, "5": 0.25}, "48": {"5": 0.0, "10": 0.125}}):
        (tmp_path / "m.json").write_text(json.dumps({"accuracy": accuracy, "steps": [5, 10]}))
        res = runner.invoke(app, ["data", "plot-accuracy", "m.json", "--out", "plots/accuracy"])
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["difficulty_24.csv", "difficulty_48.csv"]  # 96 is gone
    assert (out / "difficulty_24.csv").read_text() == "steps,accuracy\n5,0.25\n10,0.5\n"
