"""Mistakes a check can catch before training starts: each exits 2 at `th1nker validate` and at
`th1nker train` (no run folder left behind), naming the field."""

import pytest
from typer.testing import CliRunner

from th1nker.cli import app

from conftest import RECIPES

runner = CliRunner()
MULTISTEP = RECIPES / "multistep.yaml"

MISTAKES = {
    "reversed range": (["task.train=[24,8]"], "task.train: range [24, 8] is reversed"),
    "zero slots": (["model.latent.slots=0"], "model.latent.slots"),
    "heads that do not divide": (["model.blocks.think.mixer=attention", "model.blocks.think.heads=5"],
                                 "model.blocks.think.heads: 5 heads must divide model.dim 64"),
    "endless steps": (["schedule.steps=1000000000000"], "schedule.steps"),
    "negative eval steps": (["eval.steps=[5,-10]"], "eval.steps.1"),
    "absurd width": (["model.dim=1000000000"], "model.dim"),
    "infinite learning rate": (["train.optimizer.lr=.inf"], "train.optimizer.lr"),
    "no blocks": (["model.blocks={}"], "model.blocks"),
    "unknown device": (["train.device=gpu"], "train.device"),
    "even kernel": (["model.blocks.think.kernel=4"], "model.blocks.think: kernel: 4 is even"),
    "unknown state": (["schedule.step=[{block: read, write: h}, think, answer]"], "schedule.step.0.write: unknown state 'h'"),
    "unknown plan": (["train.tbptt.mode=windw"], "did you mean 'window'"),
}


@pytest.mark.parametrize("overrides, message", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_is_caught_at_validation_and_before_training(overrides, message, tmp_path):
    sets = [a for o in overrides for a in ("--set", o)]
    result = runner.invoke(app, ["validate", str(MULTISTEP), *sets])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["train", str(MULTISTEP), *sets, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output and not (tmp_path / "run").exists()


def test_an_empty_blocks_map_is_one_error_that_names_it():
    result = runner.invoke(app, ["validate", str(MULTISTEP), "--set", "model.blocks={}"])
    assert "1 error(s)" in result.output and "model.blocks:" in result.output


def test_a_model_too_large_for_this_machine_is_refused_before_allocating(tmp_path):
    # 40000-wide conv1d layers: billions of parameters, counted on the meta device, never allocated
    result = runner.invoke(app, ["train", str(MULTISTEP), "--set", "model.dim=40000", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "GiB are free; lower model.dim" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_a_thinker_lm_with_kv_heads_that_do_not_divide_its_heads_is_caught_at_validation():
    result = runner.invoke(app, ["validate", str(RECIPES / "thinker_lm.yaml"), "--set", "model.blocks.lm.kv_heads=3"])
    assert result.exit_code == 2 and "kv_heads 3 must divide heads 4" in result.output
    assert "model.blocks.lm" in result.output and "Traceback" not in result.output
