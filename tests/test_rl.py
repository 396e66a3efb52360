import json
import os
from dataclasses import replace

import gymnasium as gym
import mlflow
import numpy as np
import pytest
import torch
import yaml
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

import th1nker.rl
from th1nker.cli import app
from th1nker.recipe import RLConfig, load_recipe
from th1nker.rl import BlockChoiceEnv, BlockChoiceVecEnv, RLTrainer, episode_reward
from th1nker.rl.rollout import play
from th1nker.schedule import make_schedule
from th1nker.tasks import make_task
from th1nker.train.evaluate import load_model
from th1nker.train.loop import Trainer

from conftest import RECIPES, TINY

runner = CliRunner()


@pytest.fixture
def rl_recipe(tmp_path):
    """The tiny recipe with a probe that drives the probe schedule."""
    data = yaml.safe_load(TINY)
    data["model"]["blocks"]["probe"] = {"kind": "probe", "hidden": 16}
    data["schedule"].update(kind="probe", probe="probe", max_len=4)
    data["rl"] = {"episodes": 16, "updates": 3}
    data["tracking"] = {"enabled": False}
    path = tmp_path / "tiny_rl.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def supervised_checkpoint(recipe_path, run_dir):
    """A checkpoint of the recipe's model as `th1nker train` writes it (weights nudged off their init)."""
    recipe = load_recipe(recipe_path, ["train.ema=null"])
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.01)
    trainer.save(run_dir, {})


def one(batch, i):
    return replace(batch, inputs={k: v[i:i + 1] for k, v in batch.inputs.items()}, target=batch.target[i:i + 1])


def test_env_passes_gymnasium_check_env(rl_recipe):
    env = gym.make(th1nker.rl.ENV_ID, recipe=rl_recipe)
    check_env(env.unwrapped)
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs in env.observation_space
    assert env.action_space.n == 4 and env.unwrapped.action_masks().tolist() == [True, False, False, False]


def test_gymnasium_make_loads_the_checkpoint(rl_recipe, tmp_path):
    supervised_checkpoint(rl_recipe, tmp_path / "sup")
    env = gym.make("th1nker/BlockChoice-v0", recipe=rl_recipe, checkpoint=tmp_path / "sup")
    _, _, trained = load_model(rl_recipe, tmp_path / "sup", [])
    model = env.unwrapped.episodes.model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))


def test_masks_follow_the_graph_and_illegal_actions_fail(rl_recipe):
    env = BlockChoiceEnv(rl_recipe)
    rng = np.random.default_rng(0)
    graph = env.episodes.model.graph
    for seed in range(8):
        env.reset(seed=seed)
        done, step, walk = False, [], []
        while not done:
            action = int(rng.choice(np.flatnonzero(env.action_masks())))
            if action == len(graph.actions):
                assert step == [] and walk and walk[-1][-1] == "answer"  # stop only right after an answer
            else:
                step.append(graph.actions[action])
            _, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if step and step[-1] in graph.end:
                assert graph.is_walk(step, walk[-1][-1] if walk else None) and len(step) <= 4
                walk.append(step)
                step = []
        assert not info["illegal"] and info["steps"] == len(walk) <= 4 and info["blocks"] <= 16
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(2)  # 'answer' before anything was read
    assert terminated and not truncated and info["illegal"] and reward == -1.0  # blockdrop: -penalty


def test_vec_env_equals_single_envs(rl_recipe):
    recipe, task, model = load_model(rl_recipe, None, ["model.latent.init=fixed"])
    batch = task.eval_batch(6, 5)
    singles = [BlockChoiceEnv(model=model, task=task) for _ in range(5)]
    rng = np.random.default_rng(1)
    records = []  # per episode: (actions, observations, rewards, ends)
    for i, env in enumerate(singles):
        obs, _ = env.reset(seed=i, options={"batch": one(batch, i)})
        rec, done = ([], [obs], [], []), False
        while not done:
            rec[0].append(int(rng.choice(np.flatnonzero(env.action_masks()))))
            obs, reward, terminated, truncated, _ = env.step(rec[0][-1])
            rec[1].append(obs), rec[2].append(reward), rec[3].append((terminated, truncated))
            done = terminated or truncated
        records.append(rec)
    vec = BlockChoiceVecEnv(model, task, 5)
    obs, _ = vec.reset(0, {"batch": batch})
    for i, rec in enumerate(records):
        np.testing.assert_allclose(obs[i], rec[1][0], atol=1e-5)
    taken, waited = [0] * 5, 0  # actions each episode has taken; actions ignored while waiting
    while not vec.done.all():
        asked = vec.asked().tolist()
        actions = [rec[0][taken[i]] if asked[i] else 0 for i, rec in enumerate(records)]
        obs, reward, terminated, truncated, _ = vec.step(actions)
        for i, rec in enumerate(records):
            if asked[i]:  # each episode sees exactly what it saw alone
                np.testing.assert_allclose(obs[i], rec[1][taken[i] + 1], atol=1e-5)
                assert reward[i] == pytest.approx(rec[2][taken[i]], abs=1e-5)
                assert (terminated[i], truncated[i]) == rec[3][taken[i]]
                taken[i] += 1
            else:  # ended, or waiting for the others to end the step
                waited += not vec.done[i]
                assert reward[i] == 0 and not terminated[i] and not truncated[i]
    assert taken == [len(r[0]) for r in records] and waited > 0


def test_greedy_probe_in_the_env_is_the_probe_schedule(rl_recipe):
    torch.manual_seed(1)
    recipe, task, model = load_model(rl_recipe, None, [])
    with torch.no_grad():
        model.blocks["probe"].net[-1].bias.zero_()  # may stop at once
        batch = task.eval_batch(8, 12)
        env = BlockChoiceVecEnv(model, task, 12)
        env.reset(7, {"batch": batch})
        ep = play(env, model.blocks["probe"], greedy=True)
        thought = model.think(batch, make_schedule(recipe.schedule, model), generator=torch.Generator().manual_seed(7))
    assert torch.allclose(ep.compute * env.fixed_cost, thought.cost)
    assert torch.equal(ep.correct, task.score(model.prediction(thought), batch))
    assert (ep.steps < 4).any() and (ep.steps == 4).any() and (ep.blocks > 3 * ep.steps).any()  # varied walks


def test_reward_kinds():
    correct, compute = torch.tensor([True, True, False]), torch.tensor([0.5, 0.25, 0.5])
    assert episode_reward(RLConfig(reward="linear", lam=0.4), correct, compute).tolist() == pytest.approx([0.8, 0.9, -0.2])
    assert episode_reward(RLConfig(reward="blockdrop", penalty=2), correct, compute).tolist() == pytest.approx([0.75, 0.9375, -2])
    assert episode_reward(RLConfig(reward="ratio"), correct, compute).tolist() == pytest.approx([2, 4, 0])


def test_env_reward_is_the_configured_reward_of_the_episode(rl_recipe):
    for kind in ("linear", "blockdrop", "ratio"):
        recipe, task, model = load_model(rl_recipe, None, [f"rl.reward={kind}"])
        env = BlockChoiceEnv(model=model, task=task)
        env.reset(seed=0)
        total = 0.0
        for action in [0, 1, 2, 3]:  # read, think, answer, stop
            _, reward, terminated, truncated, info = env.step(action)
            total += reward
        assert terminated and info["compute"] == pytest.approx((1 + 1 + 0.25 + 4 * 0.05) / (4 * 2.25))
        expected = episode_reward(recipe.rl, torch.tensor([info["correct"]]), torch.tensor([info["compute"]]))
        assert total == pytest.approx(expected.item(), rel=1e-5)


def test_trainer_learns_to_stop_when_stopping_early_is_right(rl_recipe):
    # an untrained model is wrong whatever it does, so every block it runs only costs
    torch.manual_seed(0)
    _, task, model = load_model(rl_recipe, None, ["rl.reward=linear", "rl.lam=1", "rl.episodes=32", "rl.lr=0.03",
                                                  "rl.updates=25"])
    trainer = RLTrainer(model, task)
    returns = [trainer.rl_update()["return"] for _ in range(25)]
    assert np.mean(returns[-5:]) > np.mean(returns[:5]) + 0.3
    env = BlockChoiceVecEnv(model, task, 32)
    env.reset(0)
    with torch.no_grad():
        ep = play(env, model.blocks["probe"], greedy=True)
    assert ep.steps.tolist() == [1] * 32  # stops at the first chance


def test_alternation_trains_the_model_between_rl_updates(rl_recipe):
    _, task, model = load_model(rl_recipe, None, ["rl.alternate_every=2", "rl.updates=4", "rl.episodes=4"])
    trainer = RLTrainer(model, task)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.fit()
    after = trainer.model.state_dict()
    changed = {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert summary["updates"] == 4 and trainer.supervised.update == 4
    assert {"probe", "think", "read", "answer"} <= changed


def test_maskable_ppo_never_takes_a_masked_action(rl_recipe):
    from sb3_contrib import MaskablePPO

    class Guard(gym.Wrapper):
        """Fails on any action the mask forbids."""

        taken = 0

        def step(self, action):
            assert self.env.unwrapped.action_masks()[int(action)], action
            Guard.taken += 1
            return self.env.step(action)

        def action_masks(self):
            return self.env.unwrapped.action_masks()

    env = Guard(BlockChoiceEnv(rl_recipe))
    agent = MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    agent.learn(256)
    assert Guard.taken >= 256


def test_rl_command_writes_a_checkpoint_that_eval_reads(rl_recipe, tmp_path):
    supervised_checkpoint(rl_recipe, tmp_path / "sup")
    res = runner.invoke(app, ["rl", str(rl_recipe), "--checkpoint", str(tmp_path / "sup"), "--out", str(tmp_path / "rl"),
                              "--set", "rl.updates=3", "--set", "rl.episodes=8", "--set", "tracking.enabled=true"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "rl" / "metrics.json").read_text())
    assert set(metrics["fixed"]) == set(metrics["policy"]) == {"8", "12"}
    assert metrics["rl"]["updates"] == 3 and 0 < metrics["summary"]["compute_ratio"]
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (rl_run,) = client.search_runs([client.get_experiment_by_name("th1nker").experiment_id], "tags.stage = 'rl'")
    # the recipe lies in no git repository (the tests' working directory does): no commit to tag
    assert "git_commit" not in rl_run.data.tags and "git_commit_missing_reason" in rl_run.data.tags
    res = runner.invoke(app, ["eval", str(rl_recipe), "--checkpoint", str(tmp_path / "rl"), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert set(result["halting"]) == {"8", "12"} and set(result["accuracy"]["8"]) == {"2", "4", "8"}
    _, _, sup = load_model(rl_recipe, tmp_path / "sup", [])
    _, _, tuned = load_model(rl_recipe, tmp_path / "rl", [])
    assert not torch.equal(sup.blocks["probe"].net[0].weight, tuned.blocks["probe"].net[0].weight)
    assert torch.equal(sup.blocks["think"].mixers[0].conv.weight, tuned.blocks["think"].mixers[0].conv.weight)


def test_rl_needs_the_probe_schedule(rl_recipe, tmp_path):
    res = runner.invoke(app, ["rl", str(rl_recipe), "--checkpoint", str(tmp_path / "none")])
    assert res.exit_code == 2 and "no such checkpoint" in res.output
    _, task, model = load_model(rl_recipe, None, ["schedule.kind=fixed"])
    with pytest.raises(Exception, match="schedule: {kind: probe"):
        RLTrainer(model, task)


@pytest.mark.parametrize("kind", ["probe", "fixed"])
def test_shipped_rl_recipe_trains_supervised_then_by_rl(kind):
    small = ["train.batch_size=4", "task.train=[4,6]", "schedule.steps=3", "rl.episodes=4", f"schedule.kind={kind}"]
    recipe = load_recipe(RECIPES / "rl.yaml", small)
    assert recipe.rl is not None and load_recipe(RECIPES / "rl.yaml").schedule.kind == "probe"
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    losses = [trainer.train_update()["loss"] for _ in range(2)]
    assert all(np.isfinite(losses)) and trainer.update == 2
    _, task, model = load_model(RECIPES / "rl.yaml", None, small[:-1])
    model.load_state_dict(trainer.model.state_dict())
    assert np.isfinite(RLTrainer(model, task).rl_update()["return"])


def test_store_reading_recipes_run_as_one_or_many_episodes(rl_recipe):
    data = yaml.safe_load(rl_recipe.read_text())
    data["model"]["blocks"]["recall"] = {"kind": "read_latent", "heads": 2}
    data["graph"]["edges"].update(read=["think", "recall"], recall=["think"])
    rl_recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    _, task, model = load_model(rl_recipe, None, [])
    env = BlockChoiceEnv(model=model, task=task)
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    recall = model.graph.actions.index("recall")
    for action in [0, 1, 2, 0, recall]:  # read, think, answer, read, recall
        env.step(action)
    assert len(env.episodes.thought.store) == 1 and env.episodes.thought.trace[-1] == "recall"
    # batched episodes keep the loop's step boundaries, so reading the store is well defined for all
    vec = BlockChoiceVecEnv(model, task, 2)
    vec.reset(0)
    for actions in ([0, 0], [1, 1], [2, 1], [0, 2], [0, 0], [recall, recall]):  # episode 0 waits once
        vec.step(actions)
    assert vec.blocks.tolist() == [5, 6] and len(vec.thought.store) == 1
    assert vec.last.tolist() == [recall, recall] and vec.thought.trace[-1] == "recall"  # one batched call
