"""Adaptive compute: a call on some rows runs on those rows only; halting rules stop examples, which
then cost nothing; `th1nker eval --halt` reaches them."""

import pytest
import torch
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.errors import DataError
from th1nker.halting import entropy, head, kl, make_halt, max_prob
from th1nker.loop import StepEnd, think
from th1nker.model import Th1nker
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.thought import Output
from th1nker.train.evaluate import accuracy_by_steps

runner = CliRunner()


def model_and_batch(tiny_recipe, *overrides):
    recipe = load_recipe(tiny_recipe, ["model.latent.init=fixed", *overrides])
    task = make_task(recipe.task, recipe.seed)
    torch.manual_seed(0)
    return Th1nker(recipe, task.spec).eval(), task, task.eval_batch(8, 6)


def test_a_call_on_some_rows_runs_the_block_on_those_rows_only(tiny_recipe):
    model, task, batch = model_and_batch(tiny_recipe)
    seen = []
    model.blocks["think"].register_forward_pre_hook(lambda module, args: seen.append(args[0].latent.shape[0]))
    rows = torch.tensor([True, False, True, False, False, True])
    with torch.no_grad():
        whole, part = model.start(batch), model.start(batch)
        before = part.states["latent"].clone()
        model.run_call("think", whole)
        model.run_call("think", part, rows)
    assert seen == [6, 3]  # the block saw the three chosen examples, not the batch
    assert torch.allclose(part.states["latent"][rows], whole.states["latent"][rows], atol=1e-6)
    assert torch.equal(part.states["latent"][~rows], before[~rows])  # the others are untouched ...
    assert part.cost.tolist() == [1.0 * r for r in rows.tolist()]  # ... and uncharged
    assert part.calls.tolist() == [int(r) for r in rows.tolist()]


def test_an_output_on_some_rows_keeps_the_others_answers(tiny_recipe):
    model, task, batch = model_and_batch(tiny_recipe)
    with torch.no_grad():
        thought = model.start(batch)
        model.run_call("answer", thought)
        first = thought.latest["answer"].logits.clone()
        model.run_call("think", thought)
        rows = torch.tensor([True, True, False, False, False, False])
        model.run_call("answer", thought, rows)
    now = thought.latest["answer"].logits
    assert torch.equal(now[~rows], first[~rows]) and not torch.allclose(now[rows], first[rows])


def out(logits, halt=None):
    return Output(0, "answer", logits, halt=halt)


def test_the_rules_read_confidence_entropy_change_and_a_halting_head():
    sure = torch.tensor([[[10.0, -10.0], [-10.0, 10.0]]])    # (B=1, L=2, C=2): both positions certain
    torn = torch.tensor([[[10.0, -10.0], [0.0, 0.0]]])       # one position at 50/50
    logits = torch.cat([sure, torn])
    assert max_prob(0.99)(out(logits), None).tolist() == [True, False]
    assert entropy(0.1)(out(logits), None).tolist() == [True, False]
    assert kl(1e-3)(out(logits), None).tolist() == [False, False]  # nothing to compare with yet
    assert kl(1e-3)(out(logits), out(logits.clone())).tolist() == [True, True]
    assert kl(1e-3)(out(sure.expand(2, -1, -1)), out(logits)).tolist() == [True, False]
    assert entropy(1.0)(out(torch.zeros(1, 4)), None).tolist() == [False]  # a uniform class output: log 4 > 1 nats
    assert head(0.5)(out(logits, halt=torch.tensor([3.0, -3.0])), None).tolist() == [True, False]
    with pytest.raises(DataError, match="halt: true"):
        head(0.5)(out(logits), None)
    assert make_halt("none", 0.5) is None


def test_halted_examples_stop_costing_and_keep_their_answer(tiny_recipe):
    model, task, batch = model_and_batch(tiny_recipe)
    calls, halted = [], []
    always = lambda out, previous: torch.arange(len(out.logits)) < 2  # the first two halt after step 1  # noqa: E731
    with torch.no_grad():
        for event in think(model, batch, steps=4, halt=always):
            if isinstance(event, StepEnd):
                calls.append(event.thought.calls.tolist())
                halted.append(event.thought.halted.tolist())
    assert halted[0] == [True, True, False, False, False, False]
    assert [c[:2] for c in calls] == [[3, 3]] * 4  # read, think, answer once, then nothing
    assert [c[2] for c in calls] == [3, 6, 9, 12]


def test_eval_halts_by_rule_from_the_recipe_and_the_command_line(tiny_recipe, tmp_path):
    model, task, _ = model_and_batch(tiny_recipe)
    never = accuracy_by_steps(model, task, [8], [4])
    at_once = accuracy_by_steps(model, task, [8], [4], halt=lambda out, previous: torch.ones(len(out.logits), dtype=torch.bool))
    assert never["compute"]["8"]["mean_block_calls"] == 12 and at_once["compute"]["8"]["mean_block_calls"] == 3
    assert at_once["halting"]["8"] == {"mean_steps": 1.0, "halted": 1.0}
    result = runner.invoke(app, ["train", str(tiny_recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(tiny_recipe), "--checkpoint", str(tmp_path / "run"), "--halt", "entropy:10"])
    assert result.exit_code == 0 and "halts after 1.0 steps on average, 100% halted" in result.output
    result = runner.invoke(app, ["eval", str(tiny_recipe), "--checkpoint", str(tmp_path / "run"), "--halt", "max_prob"])
    assert result.exit_code == 2 and "RULE:THRESHOLD" in result.output


@pytest.mark.parametrize("rule", ["max_prob", "entropy", "kl", "head"])
def test_every_rule_is_reachable_from_a_recipe(tiny_recipe, rule):
    recipe = load_recipe(tiny_recipe, [f"eval.halt.rule={rule}", "eval.halt.threshold=0.5"])
    assert recipe.eval.halt.rule == rule and make_halt(rule, 0.5) is not None


def test_a_policy_step_syncs_with_the_host_once_per_decision(tiny_recipe, monkeypatch):
    """Host syncs (bool(), .tolist(), .item(), .nonzero()) in one step of a policy schedule whose examples
    take different blocks: one to see whether anyone can move, then one per decision."""
    from th1nker.schedule import PolicySchedule

    model, task, batch = model_and_batch(tiny_recipe)
    decisions = []

    def policy(thought, mask):  # everyone reads; then even rows think while odd rows answer; then the even ones answer
        decisions.append(len(decisions))
        rows = torch.arange(mask.shape[0])
        if len(decisions) == 1:
            return torch.zeros_like(rows)
        return torch.where((rows % 2 == 0) & (len(decisions) == 2), 1, 2)

    schedule = PolicySchedule(policy, max_len=5)
    syncs = []
    for name in ("__bool__", "tolist", "item", "nonzero"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: (syncs.append(_n), _o(self, *a, **k))[1])
    with torch.no_grad():
        thought = model.start(batch)
        syncs.clear()
        for _ in schedule.step(model, thought):
            pass
    monkeypatch.undo()
    assert model.graph.actions[:3] == ("read", "think", "answer")
    assert thought.trace == ["read", "think", "answer", "answer"] and len(decisions) == 3
    assert len(syncs) == 1 + len(decisions), syncs
