"""RL over which part of a long input to read: read_parts blocks, the kv_document task, the recipe."""

import json

import pytest
import torch
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.errors import DataError, RecipeError
from th1nker.loop import run_to_end
from th1nker.recipe import load_recipe
from th1nker.rl.read_trainer import ReadChoiceTrainer, compare_reads
from th1nker.tasks import make_task
from th1nker.tasks.base import Batch
from th1nker.tasks.kv_facts import LETTERS
from th1nker.train.evaluate import load_model
from th1nker.train.loop import Trainer

from conftest import RECIPES

RECIPE = RECIPES / "read_parts.yaml"
SMALL = ["task.eval=[4]", "task.eval_examples=32", "train.batch_size=8", "tracking.enabled=false", "rl.episodes=8",
         "rl.difficulties=[4]"]


def model_and_task(overrides=()):
    _, task, model = load_model(RECIPE, None, [*SMALL, *overrides])
    return task, model.eval()


def run(model, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        thought = run_to_end(model, batch, generator=g)
    return thought.latest["answer"].logits, thought


def set_reading(block, choosing, top_k):
    block.choosing, block.top_k = choosing, top_k


def shuffle_values(document, parts, keep, generator):
    """The document with the value tokens of every part but `keep` (B,) permuted among that part's facts:
    each part holds the same tokens (same prior), but its facts answer differently."""
    b, s = document.shape
    facts = document.view(b, parts, -1, 5).clone()
    for i in range(b):
        for p in range(parts):
            if p != int(keep[i]):
                order = torch.randperm(facts.shape[2], generator=generator)
                facts[i, p, :, 4] = facts[i, p, order, 4]
    return facts.view(b, s)


def test_a_document_holds_the_asked_key_once_with_its_value():
    task = make_task(load_recipe(RECIPE).task)
    batch = task.batch(16, 4, torch.Generator().manual_seed(0))
    assert batch.inputs["document"].shape == (16, 160) and batch.inputs["text"].shape == (16, 4)
    facts = batch.inputs["document"].view(16, 32, 5)
    for i in range(16):
        hit = (facts[i, :, :4] == batch.inputs["text"][i]).all(dim=1)
        assert int(hit.sum()) == 1 and int(facts[i, hit, 4]) - len(LETTERS) == int(batch.target[i])
        near = ((facts[i, :, :4] == batch.inputs["text"][i]).sum(dim=1) == 3).sum()
        assert near >= 8  # a quarter of the 32 keys (8): the asked key with one symbol changed


def test_choose_mode_reads_one_part_and_only_that_part_matters():
    task, model = model_and_task(["schedule.steps=1", "eval.steps=[1]"])  # one read: one part decides
    part = model.blocks["part"]
    batch = task.eval_batch(4)
    logits, thought = run(model, batch)
    assert [c.block for c in thought.choices] == ["part"] and thought.reads["part"].shape == (32, 1)
    read = thought.reads["part"][:, 0]
    # the other parts' facts answer differently, their tokens (and so the prior) unchanged
    other = Batch({**batch.inputs, "document": shuffle_values(batch.inputs["document"], 8, read,
                                                              torch.Generator().manual_seed(1))}, batch.target)
    same, t2 = run(model, other)
    assert torch.equal(t2.reads["part"], thought.reads["part"])
    assert torch.allclose(same, logits, atol=1e-5)
    set_reading(part, False, 8)  # reading every part sees the change
    every, _ = run(model, batch)
    every_other, _ = run(model, other)
    set_reading(part, True, 8)
    assert not torch.allclose(every, every_other, atol=1e-4)
    # scrambling the part it reads changes its answer
    scrambled = batch.inputs["document"].clone().view(32, 8, 20)
    scrambled[torch.arange(32), read] = torch.randint(0, 16, (32, 20), generator=torch.Generator().manual_seed(2))
    changed, _ = run(model, Batch({**batch.inputs, "document": scrambled.view(32, 160)}, batch.target))
    assert not torch.allclose(changed, logits, atol=1e-4)


def test_an_untrained_chooser_reads_the_priors_top_1_and_a_trained_one_may_not():
    task, model = model_and_task()
    part = model.blocks["part"]
    batch = task.eval_batch(4)
    chosen, thought = run(model, batch)
    assert [c.block for c in thought.choices] == ["part"] * 2  # one choice per read call, two steps
    assert all(bool((c.index == 0).all()) for c in thought.choices)  # untrained: the prior's best part
    set_reading(part, False, 1)
    top1, t = run(model, batch)
    set_reading(part, True, 8)
    assert torch.equal(chosen, top1) and t.choices == [] and t.reads["part"].shape == (32, 1)
    torch.nn.init.normal_(part.chooser.k[1].weight)
    part.chooser.match_weight.data.fill_(50.0)
    _, thought = run(model, batch)
    assert any(bool((c.index != 0).any()) for c in thought.choices)


def test_rl_over_parts_trains_only_the_chooser():
    task, model = model_and_task()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = ReadChoiceTrainer(model, task)
    for _ in range(3):
        metrics = trainer.rl_update()
    assert trainer.update == 3 and metrics["compute"] == pytest.approx(1 / 8)  # one part of the 8 top_k reads
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("blocks.part.chooser.") for k in changed)


def test_compare_names_the_arms_and_counts_parts_read():
    task, model = model_and_task()
    result = compare_reads(model, task, [4], batch_size=16)
    assert set(result) == {"top_1", "all_parts", "chooser", "summary"}
    assert [result[a]["4"]["blocks_read"] for a in ("top_1", "all_parts", "chooser")] == [2, 16, 2]
    assert result["chooser"]["4"]["accuracy"] == result["top_1"]["4"]["accuracy"]
    assert model.blocks["part"].choosing and model.blocks["part"].top_k == 8  # restored


@pytest.mark.parametrize("field, value", [("choose", 9), ("top_k", 9)])
def test_reading_more_than_the_parts_is_a_recipe_error(field, value):
    with pytest.raises(RecipeError, match=rf"model\.blocks\.part: .*{field}: {value} exceeds parts: 8"):
        load_recipe(RECIPE, [f"model.blocks.part.{field}={value}"])


@pytest.mark.parametrize("parts", [3, 64])
def test_parts_that_do_not_split_the_input_evenly_name_the_field(parts):
    task, model = model_and_task([f"model.blocks.part.parts={parts}", "model.blocks.part.top_k=1",
                                  "model.blocks.part.choose=null"])
    with pytest.raises(DataError, match=rf"model\.blocks\.part\.parts: {parts} parts of the 'document' input's "
                                        r"160 tokens must be equal and each a multiple of compress\.chunk \(5\)"):
        run(model, task.eval_batch(4, n=2))


def test_a_batch_without_the_long_input_is_a_data_error():
    task, model = model_and_task()
    batch = task.eval_batch(4, n=2)
    batch.inputs.pop("document")
    with pytest.raises(DataError, match="reads the token input 'document' but the batch has only \\['text'\\]"):
        run(model, batch)


def test_the_rl_command_trains_the_chooser_and_compares_parts(tmp_path):
    recipe = load_recipe(RECIPE, SMALL)
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    trainer.train_update()
    trainer.save(tmp_path / "sup", {})
    res = CliRunner().invoke(app, ["rl", str(RECIPE), "--checkpoint", str(tmp_path / "sup"), "--out",
                                   str(tmp_path / "rl"), *sum((["--set", s] for s in SMALL), []), "--set", "rl.updates=2"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "rl" / "metrics.json").read_text())
    assert metrics["rl"]["updates"] == 2 and set(metrics["chooser"]) == {"4"}
    assert "chooser" in res.output and "all_parts" in res.output
