"""The one thinking loop: TBPTT plans, typed window losses and caches, named states and call routing."""

import pytest
import torch
import yaml

from th1nker.loop import StepEnd, WindowEnd, think
from th1nker.omni.layers import MoE
from th1nker.plans import PLANS, Window, graded_steps, step_weights
from th1nker.recipe import load_recipe, validate_recipe
from th1nker.tasks import make_task
from th1nker.train.loop import Trainer, TorchRng

from conftest import RECIPES, TINY


def trainer_for(data: dict) -> Trainer:
    recipe = validate_recipe(data)
    return Trainer(recipe, make_task(recipe.task, recipe.seed))


def tiny(**sections) -> dict:
    data = yaml.safe_load(TINY)
    data["tracking"] = {"enabled": False}
    for key, value in sections.items():
        data[key] = value
    return data


def windows_of(model, batch, plan, weights, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [e for e in think(model, batch, plan=plan, loss_weights=weights, generator=g) if isinstance(e, WindowEnd)]


@pytest.mark.parametrize("window", [1, 2, 8])
@pytest.mark.parametrize("weights", ["uniform", "last", "increasing"])
def test_window_losses_add_up_to_the_weighted_step_losses(window, weights):
    data = tiny()
    data["model"]["latent"] = {"init": "fixed"}  # the same start in both runs
    data["schedule"]["steps"] = 8
    trainer = trainer_for(data)
    model, batch = trainer.model, trainer.task.train_batch(8, torch.Generator().manual_seed(3))
    # one window over every step: the reference per-step losses (forward values do not depend on detaching)
    (full,) = windows_of(model, batch, [Window(8, True)], weights)
    reference_weights = step_weights(weights, list(range(8)))
    reference = sum(w * full.step_losses[s] for s, w in reference_weights.items())
    plan = PLANS["window"](trainer.cfg.tbptt.model_copy(update={"window": window}), 8, None)
    parts = windows_of(model, batch, plan, weights)
    assert len(parts) == -(-8 // window)
    assert sorted(s for w in parts for s in w.step_losses) == list(range(8))  # every step supervised
    for w in parts:  # each window backpropagates on its own (window 1 crashed before)
        graded = [s for s in w.step_losses if reference_weights[s] > 0]
        assert w.loss.requires_grad == bool(graded)  # a step weighted zero builds no backward graph
        assert all(w.step_losses[s].requires_grad == (s in graded) for s in w.step_losses)
        if graded:
            w.loss.backward()
    assert sum(w.loss.item() for w in parts) == pytest.approx(reference.item(), rel=1e-5)
    if weights == "last":
        assert parts[-1].loss.item() == pytest.approx(full.step_losses[7].item(), rel=1e-5)


def test_last_k_plan_draws_a_random_depth_and_backpropagates_k():
    cfg = load_recipe(RECIPES / "multistep.yaml").train.tbptt.model_copy(update={"window": 3, "mean_depth": 8})
    rng = TorchRng(torch.Generator().manual_seed(0))
    depths = []
    for _ in range(300):
        plan = PLANS["last_k"](cfg, 20, rng)
        assert plan[-1].grad and plan[-1].steps == min(3, sum(w.steps for w in plan))
        assert all(not w.grad for w in plan[:-1])
        depths.append(sum(w.steps for w in plan))
    assert 6.5 < sum(depths) / len(depths) < 9.5 and len(set(depths)) > 5
    assert graded_steps(plan) == list(range(depths[-1] - plan[-1].steps, depths[-1]))


def longterm_trainer(mode: str) -> Trainer:
    recipe = load_recipe(RECIPES / "longterm.yaml", [f"train.tbptt.mode={mode}", "train.tbptt.window=1",
                                                   "train.batch_size=4", "model.dim=32", "tracking.enabled=false",
                                                   "task.train=[2,3]"])
    return Trainer(recipe, make_task(recipe.task, recipe.seed))


@pytest.mark.parametrize("plan", [[Window(1, False), Window(1, True)], [Window(1, True), Window(1, True)]],
                         ids=["progressive", "window"])
def test_the_longterm_compressor_learns_under_truncated_backprop(plan):
    trainer = longterm_trainer("progressive")
    model = trainer.model
    batch = trainer.task.train_batch(4, torch.Generator().manual_seed(0))
    for w in windows_of(model, batch, plan, "uniform"):
        w.loss.backward()
        assert "indexer.recall" in w.aux  # the indexer's distillation loss reached the window's loss
    grads = [p.grad for p in model.blocks["recall"].compressor.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


MOE = {"kind": "thinker", "layers": 1, "heads": 2, "hidden": 16, "experts": 4, "top_k": 2}


def test_moe_balance_loss_is_the_mean_over_every_call_of_the_window():
    data = tiny()
    data["model"]["blocks"]["think"] = MOE
    trainer = trainer_for(data)
    model = trainer.model
    calls = []  # per call of the block: the sum over its MoE layers, as the block reports it
    moes = [m for m in model.blocks["think"].modules() if isinstance(m, MoE)]
    model.blocks["think"].register_forward_pre_hook(lambda *_: calls.append([]))
    for m in moes:
        m.register_forward_hook(lambda mod, args, out: calls[-1].append(mod.aux_loss.detach().clone()))
    batch = trainer.task.train_batch(8, torch.Generator().manual_seed(0))
    (w,) = windows_of(model, batch, [Window(4, True)], "uniform")
    per_call = torch.stack([torch.stack(c).sum() for c in calls])
    assert len(calls) == 4 and per_call.std() > 0  # one call per step, each balanced differently
    assert w.aux["balance"].item() == pytest.approx(per_call.mean().item(), rel=1e-5)
    task_loss = sum(w.step_losses.values()) / 4
    assert w.loss.item() == pytest.approx((task_loss + trainer.cfg.aux_loss_weight * per_call.mean()).item(), rel=1e-5)
    assert all(m.aux_loss is None for m in moes)  # no module keeps a loss after its call


@pytest.mark.parametrize("seed", range(5))
def test_a_moe_block_that_runs_in_some_windows_only_trains(seed):
    data = tiny(seed=seed)
    data["model"]["blocks"]["moe"] = MOE
    data["graph"]["edges"] = {"read": ["think", "moe"], "think": ["think", "answer"], "moe": ["answer"], "answer": ["read"]}
    data["schedule"].update(kind="random", min_len=3, max_len=4)
    data["train"].update(tbptt={"mode": "window", "window": 1}, max_updates=50)
    trainer = trainer_for(data)
    ran = 0
    for _ in range(50):
        metrics = trainer.train_update()
        ran += "aux_balance" in metrics
        assert metrics["loss"] == metrics["loss"]  # finite
    assert trainer.update == 50 and trainer.skipped == 0 and 0 < ran < 50


def test_update_per_window_counts_logs_and_checkpoints_every_update(tmp_path, monkeypatch):
    data = tiny()
    data["train"].update(tbptt={"mode": "window", "window": 2, "update_per_window": True}, max_updates=9,
                         checkpoint_every=3, log_every=3)
    trainer = trainer_for(data)
    saved, logged = [], []
    monkeypatch.setattr(trainer, "save", lambda run_dir, extra: saved.append(trainer.update))

    class Tracker:
        def metrics(self, values, step):
            logged.append(step)

    trainer.fit(tmp_path, Tracker())
    assert trainer.update == 9 and saved == [3, 6, 9] and logged == [3, 6, 9]


TRM = {
    "name": "trm-like", "seed": 0,
    "task": {"kind": "prefix_parity", "train": [4, 6], "eval": [6]},
    "model": {"dim": 16, "states": {"y": {"init": "fixed"}, "z": {"init": "fixed"}},
              "blocks": {"net": {"kind": "process", "layers": 1}, "head": {"kind": "output_tokens"}}},
    "graph": {"start": ["net"], "edges": {"net": ["net", "head"], "head": ["net"]}},
    "schedule": {"kind": "fixed", "steps": 2, "step": [
        {"block": "net", "write": "z", "add": ["y", "input"], "repeat": 2},   # z <- net(z + y + x), twice
        {"block": "net", "write": "y", "add": ["z"]},                         # y <- net(y + z)
        {"block": "head", "read": "y"}]},
    "tracking": {"enabled": False},
}


def site_gradients(step: list) -> tuple[list[float], torch.Tensor | None]:
    """Train one window of 2 steps: (gradient norm reaching each call of `net`, in call order; net's weight grads)."""
    data = yaml.safe_load(yaml.safe_dump(TRM))
    data["schedule"]["step"] = step
    trainer = trainer_for(data)
    net, reached = trainer.model.blocks["net"], []

    def watch(module, args, thought):
        i = len(reached)
        reached.append(0.0)
        if thought.latent.requires_grad:
            thought.latent.register_hook(lambda grad: reached.__setitem__(i, float(grad.norm())))

    net.register_forward_hook(watch)
    batch = trainer.task.train_batch(4, torch.Generator().manual_seed(0))
    for w in windows_of(trainer.model, batch, [Window(2, True)], "uniform"):
        w.loss.backward()
    grads = [p.grad for p in net.parameters()]
    return reached, None if all(g is None for g in grads) else torch.cat([g.flatten() for g in grads])


def test_two_states_one_shared_network_called_at_two_sites():
    trainer = trainer_for(TRM)
    model = trainer.model
    assert set(model.blocks) == {"net", "head"}  # one set of weights for both sites
    batch = trainer.task.train_batch(4, torch.Generator().manual_seed(0))
    thought = model.think(batch, steps=1)
    assert thought.trace == ["net", "net", "net", "head"] and set(thought.states) == {"y", "z"}
    assert not torch.equal(thought.states["y"], thought.states["z"])
    reached, grads = site_gradients(TRM["schedule"]["step"])
    # per step: two z-site calls, one y-site call; every call of the shared net gets gradient
    assert len(reached) == 6 and all(r > 0 for r in reached)
    assert grads is not None and grads.abs().sum() > 0


def test_a_call_without_gradient_contributes_none():
    z_site, y_site, head = TRM["schedule"]["step"]
    reached, grads = site_gradients([{**z_site, "grad": False}, y_site, head])
    assert [r > 0 for r in reached] == [False, False, True] * 2  # the z-site runs, but sends no gradient
    assert grads is not None
    _, grads = site_gradients([{**z_site, "grad": False}, {**y_site, "grad": False}, head])
    assert grads is None


def test_the_loop_yields_every_step_and_the_trainers_windows():
    trainer = trainer_for(tiny())
    batch = trainer.task.train_batch(8, torch.Generator().manual_seed(0))
    with torch.no_grad():
        events = list(think(trainer.model, batch, steps=5))
    assert [type(e) for e in events] == [StepEnd] * 5  # no gradients: no window to backpropagate
    assert events[-1].thought.step == 5
