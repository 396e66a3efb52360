"""Medium-term memory: LatentStore gradient truncation, capacity, reset, and the recipe settings."""

import pytest
import torch

from th1nker.memory import LatentStore
from th1nker.model import Th1nker
from th1nker.recipe import load_recipe
from th1nker.schedule import make_schedule
from th1nker.tasks import make_task
from th1nker.loop import WindowEnd, think

from conftest import RECIPES


def _fill(store: LatentStore, steps: int) -> list[torch.Tensor]:
    leaves = [torch.randn(2, 3, 4, requires_grad=True) for _ in range(steps)]
    for t, leaf in enumerate(leaves):
        store.append(leaf * 1.0, t)
    return leaves


@pytest.mark.parametrize("k", [1, 4, None])
def test_gradients_reach_the_last_k_entries_only(k):
    store = LatentStore(grad_steps=k)
    leaves = _fill(store, 7)
    store.tokens().pow(2).sum().backward()
    with_grad = [leaf.grad is not None for leaf in leaves]
    n = 7 if k is None else k
    assert with_grad == [False] * (7 - n) + [True] * n


def test_no_gradient_window_detaches_everything():
    store = LatentStore(grad_steps=0)
    _fill(store, 3)
    assert not store.tokens().requires_grad


def test_capacity_keeps_the_newest_steps_and_reset_empties():
    store = LatentStore(capacity=3, grad_steps=2)
    leaves = _fill(store, 6)
    assert len(store) == 3 and store.steps == [3, 4, 5]
    assert store.tokens().shape == (2, 9, 4)
    assert torch.equal(store.tokens()[:, :3], leaves[3].detach())
    store.tokens().sum().backward()
    assert [leaf.grad is not None for leaf in leaves] == [False] * 4 + [True] * 2
    store.reset()
    assert len(store) == 0 and store.tokens() is None and store.steps == []


def test_detach_cuts_every_entry():
    store = LatentStore()
    leaves = _fill(store, 3)
    store.detach()
    assert not store.tokens().requires_grad and all(leaf.grad is None for leaf in leaves)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        LatentStore(capacity=-1)


@pytest.mark.parametrize("k", [1, 4])
def test_recipe_memory_settings_build_the_store(k):
    recipe = load_recipe(RECIPES / "memory.yaml", ["model.memory.capacity=5", f"model.memory.grad_steps={k}"])
    task = make_task(recipe.task, recipe.seed)
    model = Th1nker(recipe, task.spec)
    *_, last = think(model, task.eval_batch(4, 2), make_schedule(recipe.schedule, model), steps=7)
    thought = last.thought
    assert (thought.store.capacity, thought.store.grad_steps) == (5, k)
    assert thought.store.steps == [2, 3, 4, 5, 6]
    assert [e.requires_grad for e in thought.store.entries] == [False] * (5 - k) + [True] * k


def test_window_losses_include_block_aux_losses():
    recipe = load_recipe(RECIPES / "longterm.yaml", ["train.batch_size=4", "schedule.steps=1"])
    task = make_task(recipe.task, recipe.seed)
    model = Th1nker(recipe, task.spec).train()
    batch = task.train_batch(4, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    (window,) = [e for e in think(model, batch, steps=1, generator=g) if isinstance(e, WindowEnd)]
    assert window.loss.item() > window.step_losses[0].item()  # the indexer's KL is in the window's loss
    window.loss.backward()
    assert all(p.grad is not None for p in model.blocks["recall"].indexer.parameters())
