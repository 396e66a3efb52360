"""Learning rates must be finite; a run that stays non-finite for train.max_skipped updates stops with exit 2."""

import os

import mlflow
import pytest
from typer.testing import CliRunner

from th1nker.cli import app

runner = CliRunner()


@pytest.mark.parametrize("lr, override", [(".inf", None), (".nan", None), (None, "inf")])
def test_a_learning_rate_that_is_not_finite_fails_validation(lr, override, tiny_recipe):
    if lr is not None:
        tiny_recipe.write_text(tiny_recipe.read_text().replace("lr: 0.003", f"lr: {lr}"))
    res = runner.invoke(app, ["validate", str(tiny_recipe), *(["--set", f"train.optimizer.lr={override}"] if override else [])])
    assert res.exit_code == 2, res.output
    assert "train.optimizer.lr: Input should be a finite number" in res.output


def test_a_run_that_diverges_for_good_stops_after_max_skipped_updates(tiny_recipe, tmp_path):
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", str(tiny_recipe), "--out", str(run), "--set", "train.optimizer.lr=1e30",
                              "--set", "train.max_skipped=3"], env={"COLUMNS": "400"})
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit) and "Traceback" not in res.output
    # update 1 blows the weights up (finite), updates 2-4 are non-finite; the checkpoint of update 3 holds update 1's weights
    assert ("training diverged: updates 2-4 all had a non-finite loss or gradient (train.max_skipped=3); skipped "
            f"updates keep the weights, so the last good checkpoint is {run / 'checkpoints' / 'step_00000003'}; "
            "lower train.optimizer.lr or set train.grad_clip, then start a new run") in " ".join(res.output.split())
    assert not (run / "metrics.json").exists()
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (failed,) = client.search_runs([client.get_experiment_by_name("th1nker").experiment_id])
    assert failed.info.status == "FAILED"
