"""The anchor zoo's pieces: Sudoku with unique solutions and TRM's augmentations, DT-net's progressive-loss
plan, fresh unrolls in the loop, the halting head, and the TRM / HRM recipes' call structure."""

import random
import zlib

import pytest
import torch

from conftest import RECIPES
from th1nker.errors import DataError
from th1nker.halting import q as q_rule
from th1nker.loop import WindowEnd, think
from th1nker.model import Th1nker
from th1nker.plans import PLANS, Window, plan_weights
from th1nker.recipe import TaskConfig, TBPTTConfig, load_recipe
from th1nker.tasks import make_task
from th1nker.tasks.sudoku import Grid, augment
from th1nker.thought import Output
from th1nker.train.loop import Trainer, TorchRng

ZOO = RECIPES / "zoo"


def valid_solution(cells: list[int], grid: Grid) -> bool:
    groups = [[i for i in range(grid.n ** 2) if grid.unit[i][k] == g] for k in range(3) for g in range(grid.n)]
    return all(sorted(cells[i] for i in group) == list(range(1, grid.n + 1)) for group in groups)


@pytest.mark.parametrize("size, clues", [(4, 5), (6, 12), (9, 40)])
def test_sudoku_puzzles_have_one_solution_and_the_asked_clues(size, clues):
    task = make_task(TaskConfig(kind="sudoku", size=size, train=(clues, clues), eval=[clues]), 0)
    batch = task.batch(6, clues, torch.Generator().manual_seed(0))
    assert batch.inputs["text"].shape == (6, size * size) and batch.target.shape == (6, size * size)
    for puzzle, target in zip(batch.inputs["text"].tolist(), batch.target.tolist()):
        solution = [t + 1 for t in target]
        assert sum(v > 0 for v in puzzle) == clues
        assert task.grid.count(puzzle) == 1 and valid_solution(solution, task.grid)
        assert all(p in (0, s) for p, s in zip(puzzle, solution))
        assert zlib.crc32(bytes(puzzle)) % 2 == 0  # the held-out side


def test_solver_counts_several_solutions_and_none():
    grid = Grid(4)
    assert grid.count([0] * 16, limit=5) == 5
    assert grid.count([1, 1] + [0] * 14) == 0
    solution = grid.random_solution(random.Random(0))
    assert grid.count(solution) == 1 and valid_solution(solution, grid)


def test_augmentations_keep_puzzles_valid_and_vary_them():
    task = make_task(TaskConfig(kind="sudoku", size=9, train=(36, 36), eval=[36]), 0)
    base = task.batch(1, 36, torch.Generator().manual_seed(1))
    puzzles, solutions = base.inputs["text"].view(1, 9, 9).expand(64, -1, -1), (base.target + 1).view(1, 9, 9).expand(64, -1, -1)
    p, s = augment(puzzles, solutions, 9, torch.Generator().manual_seed(2))
    assert len({tuple(x) for x in p.flatten(1).tolist()}) > 60
    for pz, sol in zip(p.flatten(1).tolist(), s.flatten(1).tolist()):
        assert valid_solution(sol, task.grid) and task.grid.count(pz) == 1
        assert all(a in (0, b) for a, b in zip(pz, sol))
    # 6x6 boxes are 2x3: no transposition, still valid
    task6 = make_task(TaskConfig(kind="sudoku", size=6, train=(14, 14), eval=[14]), 0)
    b6 = task6.batch(4, 14, torch.Generator().manual_seed(3))
    _, s6 = augment(b6.inputs["text"].view(4, 6, 6), (b6.target + 1).view(4, 6, 6), 6, torch.Generator())
    assert all(valid_solution(x, task6.grid) for x in s6.flatten(1).tolist())


def test_training_draws_from_a_fixed_train_set_on_the_other_side():
    task = make_task(TaskConfig(kind="sudoku", size=4, train=(6, 8), eval=[6], train_set=20), 0)
    g = torch.Generator().manual_seed(0)
    batch = task.train_batch(16, g)
    assert task._pool[0].shape == (20, 4, 4)
    assert [sum(v > 0 for v in p) for p in task._pool[0].flatten(1).tolist()][:3] == [6, 7, 8]
    assert all(zlib.crc32(bytes(p)) % 2 == 1 for p in task._pool[0].flatten(1).tolist())
    assert ((batch.inputs["text"] == 0) | (batch.inputs["text"] == batch.target + 1)).all()


def test_sudoku_encode_solves_the_input():
    task = make_task(TaskConfig(kind="sudoku", size=4, train=(6, 6), eval=[6]), 0)
    batch = task.encode("12../34../..../....")
    assert task.decode(batch.target[0]).startswith("1234/3412")


def test_dtnet_plan_mixes_a_full_and_a_progressive_unroll():
    rng = TorchRng(torch.Generator().manual_seed(0))
    for _ in range(30):
        plan = PLANS["dtnet"](TBPTTConfig(mode="dtnet", alpha=0.25), 10, rng)
        assert plan[0] == Window(10, True, weight=0.75) and plan[1].fresh
        assert sum(w.steps for w in plan[1:]) <= 10 and plan[-1].grad and plan[-1].weight == 0.25
        weights = plan_weights("last", plan)
        assert weights[9] == 0.75 and weights[10 + sum(w.steps for w in plan[1:]) - 1] == 0.25
        assert sum(weights.values()) == pytest.approx(1.0)
    assert PLANS["dtnet"](TBPTTConfig(mode="dtnet", alpha=0.0), 10, rng) == [Window(10, True, weight=1.0)]
    assert not PLANS["dtnet"](TBPTTConfig(mode="dtnet", alpha=1.0), 10, rng)[0].fresh
    # plans without fresh windows weigh their steps as before
    assert plan_weights("uniform", [Window(2, False), Window(2, True)]) == {2: 0.5, 3: 0.5}


def test_a_fresh_window_restarts_the_states(tiny_recipe):
    recipe = load_recipe(tiny_recipe)
    task = make_task(recipe.task, 0)
    model = Th1nker(recipe, task.spec)
    batch = task.batch(4, 6, torch.Generator().manual_seed(0))
    steps = []
    for event in think(model, batch, plan=[Window(3, True), Window(2, True, fresh=True)],
                       generator=torch.Generator().manual_seed(0)):
        if isinstance(event, WindowEnd):
            steps.append(event.thought.step)
            event.loss.backward()
    assert steps == [3, 2]  # the second unroll counts its steps from 0 again


def test_halting_head_learns_from_bce_on_exactly_right(tiny_recipe):
    recipe = load_recipe(tiny_recipe, ["model.blocks.answer.halt=true"])
    task = make_task(recipe.task, 0)
    model = Th1nker(recipe, task.spec)
    head = model.blocks["answer"]
    assert head.halt.bias.item() == -5.0
    batch = task.batch(8, 6, torch.Generator().manual_seed(0))
    thought = model.think(batch, steps=1, generator=torch.Generator().manual_seed(0))
    out = thought.latest["answer"]
    assert out.halt.shape == (8,)
    loss = model.blocks["answer"].output_loss(out, batch.target)
    assert loss > head.loss(out.logits, batch.target)  # the BCE is added
    loss.backward()
    assert head.halt.weight.grad.abs().sum() > 0


def test_q_halting_targets_bootstrap_from_the_next_step():
    """HRM's Q-learning halting: continue at step t learns sigmoid(max(Q halt, Q continue) at t + 1), or
    sigmoid(Q halt at t + 1) after the last step; halt learns 'exactly right'; the eval rule compares them."""
    recipe = load_recipe(ZOO / "hrm_sudoku.yaml", ["task.train_set=8", "task.train=[20,22]", "train.batch_size=4"])
    assert recipe.model.blocks["head"].halt_mode == "q"
    task = make_task(recipe.task, 0)
    model = Th1nker(recipe, task.spec)
    assert model.q_halting and model.blocks["head"].halt.out_features == 2
    torch.nn.init.normal_(model.blocks["head"].halt.weight)  # Q values that differ between steps and examples
    batch = task.batch(4, 20, torch.Generator().manual_seed(0))
    with torch.no_grad():  # the Q values of four plain steps (fixed initial states: the same every run)
        q = [model.think(batch, steps=s).latest["head"].halt for s in (1, 2, 3, 4)]
    targets = []
    for event in think(model, batch, plan=[Window(1, True)] * 3):
        if isinstance(event, WindowEnd):
            out = event.thought.outputs[-1]
            assert torch.allclose(out.halt, q[len(targets)], atol=1e-5)
            targets.append(out.q_next)
            event.loss.backward()
    assert torch.allclose(targets[0], torch.sigmoid(q[1].amax(-1)), atol=1e-5)
    assert torch.allclose(targets[1], torch.sigmoid(q[2].amax(-1)), atol=1e-5)
    assert torch.allclose(targets[2], torch.sigmoid(q[3][:, 0]), atol=1e-5)  # the last step: halt alone
    assert model.blocks["head"].halt.weight.grad[1].abs().sum() > 0  # the continue row learns
    # the loss: cross-entropy + halt_weight x (BCE(halt, exactly right) + BCE(continue, target))
    head = model.blocks["head"]
    out = Output(0, "head", torch.zeros(2, 3, 6), halt=torch.tensor([[2.0, -1.0], [0.0, 3.0]]),
                 q_next=torch.tensor([0.25, 1.0]))
    target = torch.tensor([[0, 0, 0], [1, 1, 1]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    want = head.loss(out.logits, target) + head.config.halt_weight * (
        bce(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])) + bce(torch.tensor([-1.0, 3.0]), out.q_next))
    assert torch.allclose(head.output_loss(out, target), want)
    assert q_rule(0.0)(out, None).tolist() == [True, False]  # Q(halt) > Q(continue)
    with pytest.raises(DataError, match="halt_mode: q"):
        q_rule(0.0)(Output(0, "head", torch.zeros(2, 3), halt=torch.zeros(2)), None)


def test_trm_runs_one_shared_net_at_every_site_with_a_one_recursion_gradient():
    recipe = load_recipe(ZOO / "trm_sudoku.yaml", ["task.train_set=8", "task.train=[20,22]", "schedule.steps=2",
                                                  "train.batch_size=4", "train.ema=null"])
    trainer = Trainer(recipe, make_task(recipe.task, 0))
    assert list(trainer.model.blocks) == ["net", "head"]
    metrics = trainer.train_update()
    assert trainer.update == 1 and list(metrics["per_step"]) == [0]  # one update per supervision step
    assert list(trainer.train_update()["per_step"]) == [1] and trainer.update == 2
    thought = trainer.model.think(trainer.task.train_batch(2, torch.Generator()), steps=1)
    assert thought.trace == ["net"] * 21 + ["head"]  # T = 3 recursions of n = 6 z updates and one y update


def test_hrm_has_two_modules_and_the_one_step_gradient():
    recipe = load_recipe(ZOO / "hrm_sudoku.yaml", ["task.train_set=8", "task.train=[20,22]", "schedule.steps=1",
                                                  "train.batch_size=4"])
    model = Th1nker(recipe, make_task(recipe.task, 0).spec)
    assert set(model.blocks) == {"fL", "fH", "head"} and set(recipe.model.states) == {"zL", "zH"}
    graded = [c.block for c in model.calls if c.grad and c.block != "head"]
    assert graded == ["fL", "fH"]


def test_the_gpu_command_in_the_trm_recipe_comment_validates():
    import re

    text = (ZOO / "trm_sudoku.yaml").read_text()
    command = " ".join(line.lstrip("# ").rstrip("\\ ") for line in text.splitlines()
                       if line.startswith("#") and ("th1nker train" in line or line.lstrip("# ").startswith("--set")))
    overrides = re.findall(r"--set (\S+)", command)
    recipe = load_recipe(ZOO / "trm_sudoku.yaml", overrides)
    assert (recipe.model.dim, recipe.schedule.steps, recipe.train.batch_size, recipe.task.size) == (512, 16, 768, 9)
    assert [c["repeat"] for c in map(dict, recipe.schedule.step) if c.get("write") == "z"] == [6, 6, 6]


DTNET = """
name: dtnet_tiny
seed: 0
task: {kind: maze, train: [2, 3], eval: [3], eval_examples: 4}
model:
  dim: 8
  latent: {slots: input, init: fixed, scale: 0}
  blocks:
    think: {kind: dtnet, recall: RECALL}
    answer: {kind: output_conv2d}
graph: {start: [think], edges: {think: [answer], answer: [think]}}
schedule: {kind: fixed, step: [think, answer], steps: 3}
train: {tbptt: {mode: dtnet, alpha: 0.5}, batch_size: 4, max_updates: 2}
"""


def dtnet_model(recall: bool = True, task: str = "maze"):
    from th1nker.recipe import validate_recipe
    import yaml

    data = yaml.safe_load(DTNET.replace("RECALL", str(recall).lower()))
    if task != "maze":
        data["task"] = {"kind": task, "train": [4, 6], "eval": [6]}
    recipe = validate_recipe(data)
    t = make_task(recipe.task, 0)
    return Th1nker(recipe, t.spec), t


def test_dtnet_block_is_dt_nets_recurrent_block():
    """concat(latent, input) -> conv -> 2 residual blocks of two bias-free 3x3 convs, no normalisation:
    from a zero latent only the recalled input can make the latent non-zero."""
    model, task = dtnet_model()
    block, d = model.blocks["think"], 8
    assert sum(p.numel() for p in block.parameters()) == 9 * (2 * d * d + 2 * 2 * d * d)
    assert not [m for m in block.modules() if "Norm" in type(m).__name__]
    batch = task.batch(2, 3, torch.Generator().manual_seed(0))
    thought = model.start(batch)
    assert thought.latent.abs().sum() == 0
    out = model.run_call("think", thought).latent
    assert out.shape == (2, 49, d) and out.abs().sum() > 0 and (out >= 0).all()
    assert out.pow(2).mean(-1).sqrt().std() > 0.01  # not RMS-normalised per square
    closed, _ = dtnet_model(recall=False)
    assert closed.run_call("think", closed.start(batch)).latent.abs().sum() == 0  # no recall: nothing to read


def test_conv_head_sees_three_squares_around_each_square():
    model, task = dtnet_model()
    head = model.blocks["answer"]
    assert sum(p.numel() for p in head.parameters()) == 9 * (8 * 32 + 32 * 8 + 8 * 2)
    thought = model.start(task.batch(1, 3, torch.Generator().manual_seed(0)))
    thought.latent = torch.randn(1, 49, 8)
    before = head.logits_of(thought)
    thought.latent = thought.latent.clone()
    thought.latent[0, 0] += 1.0  # square (0, 0) of the 7x7 grid
    changed = (head.logits_of(thought) - before).abs().sum(-1).view(7, 7) > 0
    assert changed[:4, :4].any() and not changed[4:].any() and not changed[:, 4:].any()


def test_dtnet_block_without_a_grid_is_refused():
    model, task = dtnet_model(task="prefix_parity")
    with pytest.raises(DataError, match="dtnet.*grid"):
        model.think(task.batch(2, 6, torch.Generator().manual_seed(0)), steps=1)
