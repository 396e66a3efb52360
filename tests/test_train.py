import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.train.loop import Trainer
from th1nker.train.run import train_recipe
from th1nker.plans import PLANS, Window, step_weights
from th1nker.recipe import TBPTTConfig
from th1nker.train.loop import TorchRng

from conftest import RECIPES

runner = CliRunner()


def test_window_plans():
    rng, cfg = TorchRng(torch.Generator().manual_seed(0)), TBPTTConfig(window=4)
    assert PLANS["full"](cfg, 10, rng) == [Window(10, True)]
    assert PLANS["window"](cfg, 10, rng) == [Window(4, True), Window(4, True), Window(2, True)]
    for _ in range(50):
        plan = PLANS["progressive"](cfg, 10, rng)
        assert sum(w.steps for w in plan) <= 10 and plan[-1].grad and 1 <= plan[-1].steps <= 4
        assert all(not w.grad for w in plan[:-1])
    assert step_weights("last", [3, 4, 5]) == {3: 0, 4: 0, 5: 1}
    assert list(step_weights("increasing", [0, 1]).values()) == pytest.approx([1 / 3, 2 / 3])


@pytest.mark.parametrize("mode", ["full", "window", "progressive"])
def test_training_lowers_the_loss(tiny_recipe, mode):
    recipe = load_recipe(tiny_recipe, [f"train.tbptt.mode={mode}", "train.tbptt.window=2", "train.max_updates=40"])
    trainer = Trainer(recipe, make_task(recipe.task, 0))
    first = sum(trainer.train_update()["loss"] for _ in range(3))
    for _ in range(30):
        trainer.train_update()
    assert sum(trainer.train_update()["loss"] for _ in range(3)) < first
    assert trainer.update == 36 and trainer.skipped == 0


def test_update_per_window_steps_once_per_window(tiny_recipe):
    recipe = load_recipe(tiny_recipe, ["train.tbptt.mode=window", "train.tbptt.window=2",
                                       "train.tbptt.update_per_window=true"])
    trainer = Trainer(recipe, make_task(recipe.task, 0))
    for _ in range(2):
        assert trainer.train_update()["per_step"].keys() == {2 * trainer.update - 2, 2 * trainer.update - 1}
    assert trainer.update == 2  # 4 steps / window 2: one unroll, one update per window


def test_accumulation_really_steps(tiny_recipe):
    recipe = load_recipe(tiny_recipe, ["train.accumulate=3", "train.ema=null"])
    trainer = Trainer(recipe, make_task(recipe.task, 0))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_update()
    after = list(trainer.model.parameters())
    assert trainer.update == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


def test_nan_guard_skips_the_update(tiny_recipe):
    recipe = load_recipe(tiny_recipe, ["train.ema=null"])
    trainer = Trainer(recipe, make_task(recipe.task, 0))
    with torch.no_grad():
        trainer.model.blocks["answer"].head.weight.fill_(float("nan"))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_update()
    assert trainer.skipped == 1
    assert all(torch.equal(a, b) or torch.isnan(a).all() for a, b in zip(before, trainer.model.parameters()))


STARTED_TOGETHER = """
import sys, time, warnings
import mlflow
from th1nker.train.tracking import Tracker
warnings.simplefilter("error", UserWarning)  # a failed store warns: make it fail this process
tracker = Tracker(True, sys.argv[1], "sweep")
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # imports done: every process starts at this instant
tracker.start("run", {"seed": sys.argv[3]}, {})
print(tracker.run_id)
"""


def test_runs_started_together_share_one_fresh_sqlite_store(tmp_path):
    """A sweep's processes started at once on a store that does not exist yet all track (each corrupted the
    others' creation of the database before `store_lock`: "table _alembic_tmp_tags already exists")."""
    import subprocess
    import sys
    import time

    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start = f"{time.time() + 10:.3f}"
    procs = [subprocess.Popen([sys.executable, "-c", STARTED_TOGETHER, uri, start, str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-800:] for _, err in outs]
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1", "2"]
    assert {r.info.run_id for r in runs} == {out.strip() for out, _ in outs}


def test_train_writes_run_folder_and_mlflow_run(tiny_recipe, tmp_path):
    import mlflow

    from io import StringIO

    from rich.console import Console

    out, printed = tmp_path / "run", StringIO()
    result = train_recipe(tiny_recipe, [], out, resume=False, console=Console(file=printed, width=300))
    for name in ("recipe.yaml", "metrics.json", "eval.png", "graph.png", "checkpoints/latest"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == result["accuracy"]
    assert set(metrics["accuracy"]) == {"8", "12"} and set(metrics["accuracy"]["8"]) == {"2", "4", "8"}
    assert load_recipe(out / "recipe.yaml") == load_recipe(tiny_recipe)

    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("th1nker").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.dim"] == "16" and run.data.params["train.max_updates"] == "6"
    logged = {"loss", "lr", "grad_norm", "updates_per_s", "loss_step_001", "eval_acc_d12_s8", "updates", "final_loss"}
    assert logged <= set(run.data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 3  # logged every 2 of 6 updates
    # one step axis: MLflow's step is the update for every metric; accuracy per thinking steps is in the name
    steps = {m.step for key in run.data.metrics for m in client.get_metric_history(run.info.run_id, key)}
    assert steps == {2, 4, 6}
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("eval_acc_")} == {
        f"eval_acc_d{d}_s{s}": acc for d, row in result["accuracy"].items() for s, acc in row.items()}
    assert run.data.metrics["updates"] == 6 and run.data.metrics["final_loss"] == result["train"]["final_loss"]
    assert run.data.tags["run_dir"] == str(out.resolve()) and run.data.tags["recipe"] == str(tiny_recipe.resolve())
    assert "git_commit" not in run.data.tags  # tmp_path is in no git repository
    assert "no git repository holds" in run.data.tags["git_commit_missing_reason"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"recipe.yaml", "metrics.json", "eval.png", "graph.png", "checkpoint", "eval_accuracy.json"} <= artifacts
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "eval_accuracy.json")).read_text())
    rows = {(d, s): acc for d, s, acc in table["data"]}
    assert table["columns"] == ["difficulty", "thinking_steps", "accuracy"]
    assert rows[(12, 4)] == result["accuracy"]["12"]["4"]
    assert len(rows) == 6 and run.inputs.dataset_inputs == []  # generated data: no files to link
    link = (f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
            "?workflowType=machine_learning")  # the training view of MLflow 3's UI
    uri = os.environ["MLFLOW_TRACKING_URI"]
    assert f"see it: mlflow ui --backend-store-uri {uri}, then open {link}" in printed.getvalue()


def test_unreachable_tracking_server_warns_once_and_trains_on(tiny_recipe, tmp_path):
    with pytest.warns(UserWarning, match="MLflow tracking at http://127.0.0.1:9 failed") as record:
        train_recipe(tiny_recipe, ["tracking.uri=http://127.0.0.1:9"], tmp_path / "run", resume=False)
    assert sum("MLflow tracking" in str(w.message) for w in record) == 1
    assert (tmp_path / "run" / "metrics.json").exists()


def test_eval_json_and_think(tiny_recipe, tmp_path):
    out = tmp_path / "run"
    train_recipe(tiny_recipe, ["tracking.enabled=false"], out, resume=False)
    res = runner.invoke(app, ["eval", str(tiny_recipe), "--checkpoint", str(out), "--steps", "1,3", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data["accuracy"]["8"]) == {"1", "3"} and all(0 <= v <= 1 for v in data["accuracy"]["8"].values())
    res = runner.invoke(app, ["think", str(tiny_recipe), "--checkpoint", str(out), "--input", "0110",
                              "--steps", "3", "--trace"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "read -> think -> answer" in res.output and "answer after 3 steps" in res.output
    res = runner.invoke(app, ["think", str(tiny_recipe), "--checkpoint", str(out), "--input", "01x"])
    assert res.exit_code == 2 and "string of 0 and 1" in res.output


def test_corrupt_and_mismatched_checkpoints_exit_2(tiny_recipe, tmp_path):
    out = tmp_path / "run"
    train_recipe(tiny_recipe, ["tracking.enabled=false"], out, resume=False)
    res = runner.invoke(app, ["eval", str(tiny_recipe), "--checkpoint", str(out), "--set", "model.dim=32"])
    assert res.exit_code == 2
    assert "does not fit this recipe" in res.output and "model.dim: checkpoint has 16, recipe has 32" in res.output
    ckpt = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    weights = ckpt / "ema.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    res = runner.invoke(app, ["eval", str(tiny_recipe), "--checkpoint", str(out)])
    assert res.exit_code == 2 and "corrupt or truncated" in res.output and "ema.safetensors" in res.output
    res = runner.invoke(app, ["eval", str(tiny_recipe), "--checkpoint", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no such checkpoint" in res.output
    res = runner.invoke(app, ["train", str(tiny_recipe), "--out", str(out)])
    assert res.exit_code == 2 and "--resume" in res.output


def _train_cmd(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "th1nker", "train", str(recipe), "--out", str(out),
            "--set", "train.max_updates=300", "--set", "train.checkpoint_every=25", "--set", "train.batch_size=32",
            "--set", "tracking.enabled=false", "--set", "eval.steps=[1]", *extra]


def test_kill_9_then_resume_matches_an_uninterrupted_run(tiny_recipe, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(_train_cmd(tiny_recipe, tmp_path / "straight"), env=env, check=True, capture_output=True)

    victim = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(tiny_recipe, victim), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = victim / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not latest.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = int(latest.read_text().strip().split("_")[1])
    assert 0 < killed_at < 300

    subprocess.run(_train_cmd(tiny_recipe, victim, "--resume"), env=env, check=True, capture_output=True)
    a = load_file(tmp_path / "straight" / "checkpoints" / "step_00000300" / "model.safetensors")
    b = load_file(victim / "checkpoints" / "step_00000300" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


SMOKE = ["train.max_updates=2", "train.batch_size=4", "task.eval_examples=4", "eval.steps=[1,2]",
         "schedule.steps=2", "tracking.enabled=false", "train.checkpoint_every=1"]


@pytest.mark.parametrize("path", sorted(RECIPES.rglob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_validates_and_trains(path, tmp_path):
    recipe = load_recipe(path)
    if recipe.task.kind == "maze":
        extra = ["task.train=[2,3]", "task.eval=[3]"]
    elif recipe.task.kind == "sudoku":  # a small fixed train set of easy puzzles: quick to generate
        extra = ["task.train_set=8", "task.train=[20,24]", "task.eval=[24]"]
    elif recipe.task.kind == "text_lm" and recipe.task.path:  # a corpus the pipeline makes: a small one here
        from th1nker.tasks.code_corpus import build_code_corpus

        build_code_corpus(tmp_path / "code", max_bytes=120_000)
        extra = [f"task.path={tmp_path / 'code'}", "task.tokenizer=null"]
    elif recipe.task.kind == "code_qa":  # the code LM's tokenizer (a small one here); no run to start from
        from th1nker.omni.tokenizer import Tokenizer
        from th1nker.tasks.code_corpus import build_code_corpus

        build_code_corpus(tmp_path / "code", max_bytes=60_000)
        Tokenizer.train(tmp_path / "code" / "train.txt", 300, tmp_path / "tok.model", keep_whitespace=True)
        extra = [f"task.tokenizer={tmp_path / 'tok.model'}", "train.init=null"]
    else:
        extra = []
    if recipe.task.data is not None:  # the files it reads, as the DVC pipeline's prepare stage writes them
        data = tmp_path / "data"
        res = runner.invoke(app, ["data", "prepare", str(path), "--out", str(data), "--train-examples", "16",
                                  *(a for s in SMOKE for a in ("--set", s))])
        assert res.exit_code == 0, res.output
        extra += [f"task.data.train={data / Path(recipe.task.data.train).name}", "task.data.eval={" + ", ".join(
            f"{d}: {data / Path(file).name}" for d, file in recipe.task.data.eval.items()) + "}"]
    result = train_recipe(path, SMOKE + extra, tmp_path / "run", resume=False)
    assert result["train"]["updates"] == 2
    assert (tmp_path / "run" / "metrics.json").exists()


def test_ema_follows_a_short_run(tiny_recipe):
    """With decay 0.999, ten updates must still move the EMA most of the way to the trained weights."""
    recipe = load_recipe(tiny_recipe, ["train.ema=0.999", "train.max_updates=10"])
    trainer = Trainer(recipe, make_task(recipe.task, 0))
    start = [p.detach().clone() for p in trainer.model.parameters()]
    for _ in range(10):
        trainer.train_update()
    for p0, p, e in zip(start, trainer.model.parameters(), trainer.ema.module.parameters()):
        moved = (p - p0).norm()
        if moved > 0:
            assert (e - p).norm() < 0.5 * moved


def test_ema_copies_integer_buffers():
    """Integer buffers cannot be averaged: the EMA copies them and still averages the float tensors."""
    from th1nker.train.optim import build_ema

    net = torch.nn.Linear(2, 2)
    net.register_buffer("seen", torch.tensor([0, 1]))
    ema = build_ema(net, 0.5)
    ema.update_parameters(net)  # the first update copies
    before = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
        net.seen.add_(5)
    ema.update_parameters(net)
    assert ema.module.seen.tolist() == [5, 6]
    step = ema.module.weight - before  # decay min(0.5, 2/11): a partial step towards the new weights
    assert torch.allclose(step, torch.full_like(step, 1 - 2 / 11))


def git(folder, *args):
    env = {k: v for k, v in os.environ.items() if k != "GIT_DIR"}
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def test_git_commit_is_the_recipe_repositorys_even_from_another_repository(tiny_recipe, tmp_path, monkeypatch):
    import mlflow

    from th1nker.train.tracking import git_tags

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    for repo in (project, elsewhere):
        repo.mkdir()
        git(repo, "init", "-q")
        (repo / "note.txt").write_text(repo.name)
        git(repo, "add", "-A")
        git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", repo.name)
    recipe = project / "tiny.yaml"
    recipe.write_text(tiny_recipe.read_text())
    git(project, "add", "-A")
    git(project, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "recipe")
    monkeypatch.chdir(elsewhere)  # started inside another repository, with GIT_DIR naming it too
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    train_recipe(recipe, ["train.max_updates=2", "eval.steps=[2]"], tmp_path / "run", resume=False)
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("th1nker").experiment_id])
    assert run.data.tags["git_commit"] == git(project, "rev-parse", "HEAD") != git(elsewhere, "rev-parse", "HEAD")
    assert run.data.tags["git_dirty"] == "false" and "git_commit_missing_reason" not in run.data.tags
    (project / "tiny.yaml").write_text(tiny_recipe.read_text() + "# edited\n")
    assert git_tags(project)["git_dirty"] == "true"
    git(project, "init", "-q", str(project / "fresh"))
    assert "has no commit yet" in git_tags(project / "fresh")["git_commit_missing_reason"]
