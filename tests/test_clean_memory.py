"""Cleaned-memory training and evaluation (train.clean_memory, eval.clean_memory) and the kv_rule task."""

import torch

from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.train.clean_memory import without_longterm
from th1nker.train.evaluate import accuracy_by_steps
from th1nker.train.loop import Trainer

from conftest import RECIPES

SMALL = ["task.train=[1,4]", "task.eval=[8]", "task.eval_examples=32", "train.batch_size=8", "tracking.enabled=false",
         "train.ema=null"]


def compressor_learns(overrides):
    recipe = load_recipe(RECIPES / "clean_memory.yaml", [*SMALL, *overrides])
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    compressor = trainer.model.blocks["recall"].compressor
    before = [p.detach().clone() for p in compressor.parameters()]
    trainer.train_update()
    return trainer, any(not torch.equal(a, p) for a, p in zip(before, compressor.parameters()))


def test_cleaned_batches_never_read_the_long_term_memory():
    trainer, read = compressor_learns(["train.clean_memory.fraction=1.0"])
    assert not read and trainer.cleaner.cleaned == 1
    trainer, read = compressor_learns(["train.clean_memory=null"])
    assert read and trainer.cleaner is None


def test_a_fraction_of_the_batches_is_cleaned():
    recipe = load_recipe(RECIPES / "clean_memory.yaml", [*SMALL, "train.clean_memory.fraction=0.5"])
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    for _ in range(16):
        trainer.train_update()
    assert 3 <= trainer.cleaner.cleaned <= 13


def test_kv_rule_values_follow_the_rule_of_the_key():
    recipe = load_recipe(RECIPES / "clean_memory.yaml", SMALL)
    task = make_task(recipe.task, 0)
    batch = task.batch(64, 8, torch.Generator().manual_seed(0))
    key = batch.inputs["text"]
    assert torch.equal(batch.target, (key[:, 0] + key[:, 1]) % 16)
    facts = batch.inputs["memory"].view(64, -1, task.key_len + 1)
    assert torch.equal(facts[..., -1] - task.symbols, (facts[..., 0] + facts[..., 1]) % 16)


def test_evaluation_without_long_term_memory():
    recipe = load_recipe(RECIPES / "clean_memory.yaml", SMALL)
    task = make_task(recipe.task, 0)
    batch = task.eval_batch(8)
    assert "memory" not in without_longterm(batch).inputs and "memory" in batch.inputs
    trainer = Trainer(load_recipe(RECIPES / "clean_memory.yaml", [*SMALL, "eval.clean_memory=true"]), task)
    model = trainer.eval_model
    seen = []
    model.blocks["recall"].register_forward_hook(lambda m, i, o: seen.append(o.longterm))
    result = accuracy_by_steps(model, task, [8], [2], batch_size=32)
    assert set(result["accuracy"]["8"]) == {"2"} and seen and all(m is None for m in seen)
