"""Data-parallel training under torchrun: two CPU processes (gloo) against one process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from th1nker.cli import app

from conftest import TINY

runner = CliRunner()

# Builds the Trainer as `th1nker train` does and, after every update, all-gathers each rank's full
# parameters to check that the ranks agree; rank 0 writes the losses and a checkpoint.
WORKER = """
import json, sys
from pathlib import Path
import torch, torch.distributed as dist
from torch.distributed.tensor import DTensor
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.train import distributed
from th1nker.train.loop import Trainer

recipe_path, out, *overrides = sys.argv[1:]
recipe = load_recipe(recipe_path, overrides)
trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
losses, agree = [], []
for _ in range(recipe.train.max_updates):
    losses.append(trainer.train_update()["loss"])
    flat = torch.cat([v.flatten().float() for v in distributed.full_state_dict(trainer.model).values()])
    copies = [torch.empty_like(flat) for _ in range(distributed.world_size())]
    if dist.is_initialized():
        dist.all_gather(copies, flat)
    else:
        copies = [flat]
    agree.append(all(torch.equal(c, flat) for c in copies))
trainer.save(out, {})
if distributed.is_main():
    sharded = any(isinstance(p, DTensor) for p in trainer.model.parameters())
    log = {"losses": losses, "agree": agree, "world": distributed.world_size(), "sharded": sharded}
    Path(out, "log.json").write_text(json.dumps(log))
distributed.teardown()
"""

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
# init: fixed makes the unroll draw only the window plan, which every rank draws as one process does;
# with each rank's examples sliced from the same global batch, 2 x 4 examples = 1 x 8 examples
SAME_EXAMPLES = ["model.latent.init=fixed", "train.max_updates=6", "train.batch_size=8"]
LOSS_RTOL = 1e-5  # float32 sums of 4 + 4 examples against 8: rounding only (about 1e-7 seen)
WEIGHTS = ("model.safetensors", "ema.safetensors")


def _worker(tmp_path: Path, name: str, launcher: list[str], *overrides: str) -> tuple[dict, dict]:
    recipe, script, out = tmp_path / "tiny.yaml", tmp_path / "worker.py", tmp_path / name
    recipe.write_text(TINY)
    script.write_text(WORKER)
    out.mkdir()
    done = subprocess.run([*launcher, str(script), str(recipe), str(out), *SAME_EXAMPLES, *overrides],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ckpt = out / "checkpoints" / "step_00000006"
    return json.loads((out / "log.json").read_text()), {f: load_file(ckpt / f) for f in WEIGHTS}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    return _worker(tmp_path_factory.mktemp("one"), "one", [sys.executable])


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_stay_identical_and_match_one_process(one_process, tmp_path, strategy):
    single, single_weights = one_process
    log, weights = _worker(tmp_path, strategy, TORCHRUN, f"train.distributed.strategy={strategy}")
    assert log["world"] == 2 and single["world"] == 1 and log["sharded"] == (strategy == "fsdp")
    assert log["agree"] == [True] * 6  # every rank holds the same parameters after every update
    assert log["losses"] == pytest.approx(single["losses"], rel=LOSS_RTOL)
    for file in WEIGHTS:  # full tensors, as one process writes them
        assert weights[file].keys() == single_weights[file].keys()
        for k in weights[file]:
            assert torch.allclose(weights[file][k], single_weights[file][k], rtol=0, atol=1e-5), (file, k)


def test_cli_nproc_trains_logs_once_and_resumes_exactly(tiny_recipe, tmp_path):
    import mlflow

    out = tmp_path / "run"
    res = runner.invoke(app, ["train", str(tiny_recipe), "--out", str(out), "--nproc", "2"])
    assert res.exit_code == 0, res.output
    for name in ("recipe.yaml", "metrics.json", "eval.png", "graph.png", "checkpoints/latest"):
        assert (out / name).exists(), name
    state = json.loads((out / "checkpoints" / "step_00000006" / "state.json").read_text())
    assert state["world_size"] == 2 and state["update"] == 6
    rng = load_file(out / "checkpoints" / "step_00000006" / "trainer.safetensors")
    assert {"rng.generator.0", "rng.generator.1"} <= rng.keys()

    # interrupt after update 3 (drop the last checkpoint), then resume under torchrun: the same update 6
    straight = tmp_path / "straight"
    shutil.copytree(out / "checkpoints" / "step_00000006", straight)
    shutil.rmtree(out / "checkpoints" / "step_00000006")
    (out / "checkpoints" / "latest").write_text("step_00000003\n")
    res = runner.invoke(app, ["train", str(tiny_recipe), "--out", str(out), "--nproc", "2", "--resume"])
    assert res.exit_code == 0, res.output
    for file in (*WEIGHTS, "trainer.safetensors"):  # weights, optimizer moments, every rank's RNG
        a, b = load_file(straight / file), load_file(out / "checkpoints" / "step_00000006" / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file

    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("th1nker").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # rank 0 alone tracks, resume continues it
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")] == [2, 4, 6, 4, 6]

    res = runner.invoke(app, ["eval", str(tiny_recipe), "--checkpoint", str(out), "--steps", "2", "--json"])
    assert res.exit_code == 0, res.output  # the 2-process checkpoint loads in one process
    res = runner.invoke(app, ["train", str(tiny_recipe), "--out", str(out), "--resume"])
    assert res.exit_code == 2 and "written by 2 process(es) but resumed by 1" in res.output


def test_each_rank_takes_its_slice_of_the_global_batch(monkeypatch):
    from th1nker.tasks.base import Batch
    from th1nker.train.distributed import shard_batch

    batch = Batch({"text": torch.arange(8)[:, None]}, torch.arange(8)[:, None])
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, rows in ((0, [0, 1, 2, 3]), (1, [4, 5, 6, 7])):
        monkeypatch.setenv("RANK", str(rank))
        part = shard_batch(batch)
        assert part.inputs["text"].flatten().tolist() == rows and part.target.flatten().tolist() == rows


def test_nproc_that_does_not_split_the_batch_exits_2(tiny_recipe):
    res = runner.invoke(app, ["train", str(tiny_recipe), "--nproc", "3"])
    assert res.exit_code == 2
    assert "train.batch_size: 8 examples do not split evenly over 3 processes" in res.output
