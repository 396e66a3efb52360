"""code_qa ("question? answer." about tiny Python programs) and fine-tuning from a run (train.init)."""

import random

import pytest
import torch
from safetensors.torch import load_file

from th1nker.errors import CheckpointError, DataError
from th1nker.omni.tokenizer import Tokenizer
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.tasks.base import IGNORE
from th1nker.tasks.code_corpus import build_code_corpus
from th1nker.tasks.code_qa import CHAINS, MAX_HOPS, held_out, make_question
from th1nker.tasks.code_qa_shortcuts import SHORTCUTS, chance, generated, shortcut_scores
from th1nker.train.loop import Trainer
from th1nker.train.run import train_recipe

from conftest import RECIPES


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("code")
    build_code_corpus(folder, max_bytes=60_000)
    Tokenizer.train(folder / "train.txt", 300, folder / "tok.model", keep_whitespace=True)
    return folder / "tok.model"


def qa_task(tokenizer, *extra):
    recipe = load_recipe(RECIPES / "thinking_lm_qa.yaml", [f"task.tokenizer={tokenizer}", "train.init=null", *extra])
    return recipe, make_task(recipe.task, recipe.seed)


def test_questions_are_python_programs_and_their_answer_is_the_value():
    rng = random.Random(0)
    for hops in (1, 2, 4):
        for _ in range(20):
            q, a = make_question(hops, rng)
            program, name = q[:-1].rsplit("; ", 1)
            scope = {}
            exec(program.replace("; ", "\n"), {}, scope)
            assert str(scope[name]) == a and program.count(" = ") == hops * CHAINS
            numbers = [v for v in scope.values() if isinstance(v, int)]
            assert len(set(numbers)) == CHAINS and int(a) in numbers  # CHAINS distinct numbers, one is the answer


@pytest.mark.parametrize("hops", range(1, MAX_HOPS + 1))
def test_no_surface_rule_beats_chance(hops):
    """First / last / most frequent number, or the number nearest the asked name, over 20,000 generated
    questions: each right at most chance + 0.02 (chance is exactly 1/CHAINS); at 1 hop the asked name's own
    statement holds the answer, so reading it there is the task, not a shortcut."""
    assert chance() == 1 / CHAINS
    questions = generated(hops, 20_000)
    scores = shortcut_scores(questions)
    assert set(scores) == set(SHORTCUTS)
    for name, score in scores.items():
        if hops == 1 and name == "number nearest the asked name":
            assert score == 1.0
        else:
            assert score <= chance() + 0.02, (name, score)
    ranks = [[m for m in q.replace(";", " ").split() if m.isdigit()].index(a) for q, a in questions]
    for rank in range(CHAINS):  # the answer stands at each of the program's number positions equally often
        assert abs(ranks.count(rank) / len(ranks) - chance()) <= 0.02, rank


def test_held_out_questions_are_never_trained_on(tokenizer):
    _, task = qa_task(tokenizer)
    decode = lambda batch: [task.tokenizer.decode(row.tolist()).split("?")[0] + "?" for row in batch.inputs["text"]]
    train = decode(task.train_batch(64, torch.Generator().manual_seed(0)))
    evaluated = decode(task.eval_batch(2, 64))
    assert not any(held_out(q) for q in train) and all(held_out(q) for q in evaluated)
    assert decode(task.eval_batch(2, 64)) == evaluated  # a fixed set


def test_only_the_answer_is_scored_and_all_of_it(tokenizer):
    _, task = qa_task(tokenizer)
    batch = task.pack([("b = 5; a = b; a?", "5"), ("c = 12; c?", "12")])
    for row, target in zip(batch.inputs["text"], batch.target):
        scored = target[target != IGNORE].tolist()
        assert task.tokenizer.decode(scored[:-1]).strip() in ("5.", "12.") and scored[-1] == task.tokenizer.eos_id
        first = int((target != IGNORE).nonzero()[0])
        assert task.tokenizer.decode(row[:first + 1].tolist()).endswith("?")  # the answer follows the question
    right = batch.target.clamp(min=0)
    assert task.score(right, batch).all()
    wrong = right.clone()
    wrong[1, int((batch.target[1] != IGNORE).nonzero()[-1])] += 1  # only the eos after '12.' is wrong
    assert task.score(wrong, batch).tolist() == [True, False]
    with pytest.raises(DataError, match="hops 1..6"):
        qa_task(tokenizer, "task.eval=[0]")


def test_train_init_starts_from_a_run_and_names_a_bad_one(tiny_recipe, tmp_path):
    train_recipe(tiny_recipe, ["train.max_updates=3", "tracking.enabled=false", "train.ema=null"], tmp_path / "a", False)
    trained = load_file(tmp_path / "a" / "checkpoints" / "step_00000003" / "model.safetensors")
    trainer = Trainer(load_recipe(tiny_recipe, [f"train.init={tmp_path / 'a'}"]), make_task(
        load_recipe(tiny_recipe).task, 0))
    assert trainer.update == 0
    for name, p in trainer.model.state_dict().items():
        assert torch.equal(p, trained[name]), name
    with pytest.raises(CheckpointError, match=r"train.init: .*nowhere: no such checkpoint or run folder"):
        Trainer(load_recipe(tiny_recipe, [f"train.init={tmp_path / 'nowhere'}"]), make_task(load_recipe(tiny_recipe).task, 0))
