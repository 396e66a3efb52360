"""The memory tasks (delayed_recall, kv_facts) and the streamed text read."""

import pytest
import torch

from th1nker.errors import DataError
from th1nker.recipe import TaskConfig, load_recipe
from th1nker.tasks import make_task
from th1nker.tasks.delayed_recall import QUERY
from th1nker.model import Th1nker

from conftest import RECIPES


def test_delayed_recall_streams_facts_then_asks_one():
    task = make_task(TaskConfig(kind="delayed_recall"))
    batch = task.batch(32, 5, torch.Generator().manual_seed(0))
    text = batch.inputs["text"]
    assert text.shape == (32, 12) and bool((text[:, 10] == QUERY).all())
    keys, values = text[:, 0:10:2], text[:, 1:10:2] - 16
    assert all(len(set(row.tolist())) == 5 for row in keys)
    asked = (keys == text[:, 11:12]).float().argmax(1)
    assert torch.equal(values[torch.arange(32), asked], batch.target)
    one = task.encode("a3 c7 b1 ?c")
    assert one.target.tolist() == [7] and task.decode(one.target[0]) == "7"
    with pytest.raises(DataError, match="keys must be distinct"):
        task.encode("a3 a7 ?a")
    with pytest.raises(DataError, match="1..16"):
        task.batch(2, 17, torch.Generator())


def test_a_streamed_read_sees_two_tokens_per_step_then_nothing():
    recipe = load_recipe(RECIPES / "memory.yaml")
    task = make_task(recipe.task)
    model = Th1nker(recipe, task.spec)
    batch = task.batch(2, 2, torch.Generator().manual_seed(0))
    thought = model.start(batch)
    encoded = thought.inputs["text"].tokens
    read = model.blocks["read"]
    for step in range(4):
        thought.step = step
        src = read.source(thought)
        if step < 3:
            assert torch.equal(src.tokens, encoded[:, 2 * step:2 * step + 2])
        else:
            assert src is None


@pytest.mark.parametrize("blocks, negatives", [(6, 6), (64, 15)])  # 64: more negatives than distinct swaps
def test_kv_facts_questions_are_answered_by_one_fact_of_the_pool(blocks, negatives):
    task = make_task(TaskConfig(kind="kv_facts"))
    batch = task.batch(16, blocks, torch.Generator().manual_seed(0))
    memory = batch.inputs["memory"]
    assert memory.shape == (16, blocks, task.chunk)
    facts = memory.view(16, -1, task.key_len + 1)
    swaps = 0
    for i in range(16):
        key = batch.inputs["text"][i]
        same = (facts[i, :, :-1] == key).sum(1)
        hit = same == task.key_len
        anagram = (facts[i, :, :-1].sort(1).values == key.sort().values).all(1) & ~hit
        assert int(hit.sum()) == 1 and int(((same == task.key_len - 1) | anagram).sum()) >= negatives
        assert int(facts[i, hit, -1]) - task.symbols == int(batch.target[i])
        swaps += int(anagram.sum())
    assert swaps >= 16  # about half of the hard negatives (at most 6 a key) are its symbols in another order


def test_kv_facts_negatives_never_loop_when_the_pool_already_holds_them():
    """A pool that already holds every swap of the asked key: the drawn keys are redrawn, not the negatives."""
    task = make_task(TaskConfig(kind="kv_facts"))
    key = [0, 1, 2, 3]
    swaps = [key[:i] + [key[j]] + key[i + 1:j] + [key[i]] + key[j + 1:] for i in range(4) for j in range(i + 1, 4)]
    code = lambda k: sum(d * 16 ** (3 - p) for p, d in enumerate(k))  # noqa: E731
    drawn = [code(key)] + [code(s) for s in swaps] + [1000 + i for i in range(57)]
    codes = torch.tensor([drawn, drawn])
    out = task._near_misses(codes, torch.tensor([0, 0]), torch.Generator().manual_seed(0))
    assert (out[:, 0] == code(key)).all()
    assert all(len(set(row.tolist())) == len(row) for row in out)
    assert all({code(s) for s in swaps} <= set(row.tolist()) for row in out)  # 15 negatives hold all 6 swaps


def test_kv_facts_corpus_round_trip_and_errors():
    task = make_task(TaskConfig(kind="kv_facts"))
    keys, values, ids = task.pool(3, torch.Generator().manual_seed(0))
    text = task.corpus_text(keys, values)
    assert torch.equal(task.encode_corpus(text), ids)
    with pytest.raises(DataError, match=r"c\.txt:2: expected `key value`"):
        task.encode_corpus("abcd 1\nabc 2\n", "c.txt")
    with pytest.raises(DataError, match="multiple of 4"):
        task.encode_corpus("abcd 1\n")
    with pytest.raises(DataError, match="distinct keys"):
        task.pool(20000, torch.Generator())
