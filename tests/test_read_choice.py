"""RL over what to read: a chooser picks which of the indexer's top-C long-term memory blocks a read takes."""

import json

import pytest
import torch
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.errors import RecipeError
from th1nker.loop import run_to_end
from th1nker.rl.read_trainer import ReadChoiceTrainer, compare_reads
from th1nker.thought import ReadChoice
from th1nker.train.evaluate import load_model
from th1nker.train.loop import Trainer
from th1nker.tasks import make_task
from th1nker.recipe import load_recipe

from conftest import RECIPES

SMALL = ["task.train=[1,4]", "task.eval=[8]", "task.eval_examples=32", "train.batch_size=8", "tracking.enabled=false",
         "rl.episodes=8", "rl.difficulties=[8]"]


def model_and_task(overrides=()):
    _, task, model = load_model(RECIPES / "read_choice.yaml", None, [*SMALL, *overrides])
    return task, model.eval()


def predictions(model, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    thought = run_to_end(model, batch, generator=g)
    return model.prediction(thought), thought


def test_an_untrained_chooser_reads_the_indexers_top_1():
    task, model = model_and_task()
    batch = task.eval_batch(8)
    recall = model.blocks["recall"]
    with torch.no_grad():
        chosen, thought = predictions(model, batch)
        recall.choosing, recall.top_k = False, 1
        top1, _ = predictions(model, batch)
        recall.choosing = True
    assert [c.block for c in thought.choices] == ["recall"] * 2  # one choice per read call, two steps
    assert all(bool((c.index == 0).all()) for c in thought.choices)
    assert torch.equal(chosen, top1)
    torch.nn.init.normal_(recall.chooser.k[1].weight)  # a strong learned match overrides the indexer's order
    recall.chooser.match_weight.data.fill_(50.0)
    with torch.no_grad():
        _, thought = predictions(model, batch)
    assert any(bool((c.index != 0).any()) for c in thought.choices)


def test_exploring_samples_and_only_the_chooser_gets_gradients():
    task, model = model_and_task()
    model.requires_grad_(False)
    recall = model.blocks["recall"]
    recall.chooser.requires_grad_(True)
    torch.nn.init.normal_(recall.chooser.k[1].weight)
    batch = task.batch(64, 8, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    thought = model.start(batch, g)
    thought.explore = g
    thought = run_to_end(model, batch, generator=g, thought=thought)
    picks = torch.cat([c.index for c in thought.choices])
    assert picks.unique().numel() > 1 and int(picks.max()) < 8  # sampled, among the top-8
    log_prob = torch.stack([c.log_prob for c in thought.choices]).sum()
    log_prob.backward()
    assert recall.chooser.k[1].weight.grad is not None
    assert all(p.grad is None for n, p in model.named_parameters() if ".chooser." not in n)


def test_rl_over_reads_trains_only_the_chooser():
    task, model = model_and_task()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = ReadChoiceTrainer(model, task)
    for _ in range(3):
        metrics = trainer.rl_update()
    assert trainer.update == 3 and 0 <= metrics["accuracy"] <= 1 and metrics["compute"] == pytest.approx(0.25)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".chooser." in k for k in changed)


def test_rl_over_reads_needs_a_chooser():
    task, model = model_and_task(["model.blocks.recall.choose=null"])
    with pytest.raises(RecipeError, match="choose: C"):
        ReadChoiceTrainer(model, task)


def test_compare_reads_reports_the_three_arms():
    task, model = model_and_task()
    result = compare_reads(model, task, [8], batch_size=16)
    assert set(result) == {"top_1", "top_4", "chooser", "summary"}
    assert result["top_1"]["8"]["blocks_read"] == 2 and result["top_4"]["8"]["blocks_read"] == 8
    assert result["chooser"]["8"]["blocks_read"] == 2
    assert result["chooser"]["8"]["accuracy"] == result["top_1"]["8"]["accuracy"]  # untrained: the same block
    assert model.blocks["recall"].choosing and model.blocks["recall"].top_k == 4  # restored


def test_choices_of_a_row_subset_merge_back():
    task, model = model_and_task()
    batch = task.eval_batch(8, n=6)
    thought = model.start(batch, torch.Generator().manual_seed(0))
    index = torch.tensor([1, 4])
    part = thought.select(index)
    part.choices.append(ReadChoice("recall", torch.tensor([3, 5]), torch.tensor([-0.5, -1.0]), torch.ones(2)))
    thought.merge(part, index, "latent")
    c = thought.choices[-1]
    assert c.index.tolist() == [-1, 3, -1, -1, 5, -1] and c.log_prob.tolist() == [0, -0.5, 0, 0, -1.0, 0]


def test_the_rl_command_trains_the_chooser_and_compares_reads(tmp_path):
    recipe = load_recipe(RECIPES / "read_choice.yaml", SMALL)
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    trainer.train_update()
    trainer.save(tmp_path / "sup", {})
    res = CliRunner().invoke(app, ["rl", str(RECIPES / "read_choice.yaml"), "--checkpoint", str(tmp_path / "sup"),
                                   "--out", str(tmp_path / "rl"), *sum((["--set", s] for s in SMALL), []),
                                   "--set", "rl.updates=2"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "rl" / "metrics.json").read_text())
    assert metrics["rl"]["updates"] == 2 and set(metrics["chooser"]) == {"8"}
    assert "chooser" in res.output and "top_4" in res.output
