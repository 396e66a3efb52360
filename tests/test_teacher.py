"""Kickstarting: a trained run's per-step answers guide a bigger student, with a weight that decays to 0."""

import pytest
import torch
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.errors import RecipeError
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.train.loop import Trainer

runner = CliRunner()


@pytest.fixture
def teacher_run(tiny_recipe, tmp_path):
    result = runner.invoke(app, ["train", str(tiny_recipe), "--out", str(tmp_path / "teacher")])
    assert result.exit_code == 0, result.output
    return tmp_path / "teacher"


def student(tiny_recipe, *overrides) -> Trainer:
    recipe = load_recipe(tiny_recipe, ["model.dim=32", "train.ema=null", *overrides])
    return Trainer(recipe, make_task(recipe.task, recipe.seed))


def test_a_teacher_adds_a_decaying_distillation_loss(tiny_recipe, teacher_run):
    guided = student(tiny_recipe, f"train.teacher.run={teacher_run}", "train.teacher.decay_updates=2")
    alone = student(tiny_recipe)
    first = guided.train_update()
    assert first["aux_distill"] > 0 and "aux_distill" not in alone.train_update()
    changed = [not torch.equal(a, b) for a, b in zip(guided.model.parameters(), alone.model.parameters())]
    assert any(changed)  # the same data and start, another update: the teacher's loss was followed
    guided.train_update()
    assert "aux_distill" not in guided.train_update()  # weight 0 after decay_updates
    assert all(not p.requires_grad for p in guided.teacher.model.parameters())


def test_a_teacher_from_another_task_is_refused(tiny_recipe, teacher_run):
    with pytest.raises(RecipeError, match="train.teacher.run: .* another task"):
        student(tiny_recipe, f"train.teacher.run={teacher_run}", "task.kind=addition", "task.train=[1,2]",
                "task.eval=[2]")
    with pytest.raises(RecipeError, match="not a run folder"):
        student(tiny_recipe, f"train.teacher.run={teacher_run / 'nothing'}")
