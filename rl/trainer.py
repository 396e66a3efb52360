"""REINFORCE on the probe: it learns which block runs next, and when to stop, from batches of episodes."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import torch

from th1nker.errors import RecipeError
from th1nker.recipe import OptimizerConfig, RLConfig, validate_recipe
from th1nker.rl.batch_env import BlockChoiceVecEnv
from th1nker.rl.rollout import play
from th1nker.train import checkpoint as ckpt_io
from th1nker.train.loop import Trainer
from th1nker.train.optim import build_scheduler


class RLTrainer:
    """Trains the probe that `schedule.probe` names as the policy of `BlockChoiceVecEnv`.

    Each update plays `rl.episodes` episodes (one batch, one difficulty) with actions sampled from the
    probe's masked logits, and follows REINFORCE with a leave-one-out batch-mean baseline and an entropy
    bonus. Only the probe learns; with `rl.alternate_every: N`, N RL updates alternate with N
    supervised updates of the whole model (`th1nker.train.loop.Trainer`, schedule `rl.supervised_schedule`).
    """

    def __init__(self, model, task):
        recipe = model.recipe
        if recipe.schedule.kind != "probe":
            raise RecipeError(f"schedule.kind: '{recipe.schedule.kind}'; RL trains the probe that drives the probe "
                              "schedule: set schedule: {kind: probe, probe: NAME}")
        self.recipe, self.task = recipe, task
        self.rl = rl = recipe.rl or RLConfig()
        self.supervised = None
        if rl.alternate_every:
            self.supervised = Trainer(_supervised_recipe(recipe, rl), task, next(model.parameters()).device)
            self.supervised.model.load_state_dict(model.state_dict())
            model = self.supervised.model
        self.model = model
        self.probe = model.blocks[recipe.schedule.probe]
        self.env = BlockChoiceVecEnv(model, task, rl.episodes, rl)
        self.optimizer = torch.optim.Adam(self.probe.parameters(), lr=rl.lr)
        self.scheduler = build_scheduler(self.optimizer, OptimizerConfig(lr=rl.lr, warmup=0), rl.updates)
        self.generator = torch.Generator().manual_seed(recipe.seed + 2)
        self.update = 0

    def rl_update(self) -> dict[str, float]:
        """One policy-gradient update from one batch of sampled episodes; returns its metrics."""
        self.env.reset(int(torch.randint(2**62, (1,), generator=self.generator)))
        ep = play(self.env, self.probe, greedy=False, generator=self.generator)
        n = len(ep.reward)
        advantage = ep.reward - (ep.reward.sum() - ep.reward) / (n - 1)
        loss = -(advantage * ep.log_prob).mean() - self.rl.entropy * ep.entropy.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.probe.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.update += 1
        return {"return": ep.reward.mean().item(), "accuracy": ep.correct.float().mean().item(),
                "compute": ep.compute.mean().item(), "steps": ep.steps.float().mean().item(),
                "blocks": ep.blocks.float().mean().item(), "entropy": ep.entropy.mean().item(),
                "difficulty": float(self.env.batch.difficulty or 0)}

    def fit(self, run_dir: Path | None = None, tracker=None, progress=None) -> dict:
        """Run `rl.updates` updates (and the supervised ones between them); checkpoint into `run_dir`."""
        rl, start, window = self.rl, time.time(), defaultdict(list)
        task_id = progress.add_task("rl", total=rl.updates, ret=float("nan")) if progress else None
        while self.update < rl.updates:
            metrics = self.rl_update()
            for k, v in metrics.items():
                window[k].append(v)
            if self.supervised and self.update % rl.alternate_every == 0:
                window["supervised_loss"] += [self.supervised.train_update()["loss"] for _ in range(rl.alternate_every)]
            if progress:
                progress.update(task_id, completed=self.update, ret=metrics["return"])
            if self.update % rl.log_every == 0 or self.update == rl.updates:
                if tracker:
                    tracker.metrics({f"rl_{k}": sum(v) / len(v) for k, v in window.items()}, step=self.update)
                window.clear()
            if run_dir is not None and self.update % self.recipe.train.checkpoint_every == 0:
                self.save(run_dir)
        if run_dir is not None:
            self.save(run_dir)
        return {"updates": self.update, "minutes": (time.time() - start) / 60, "final": metrics}

    def save(self, run_dir: Path) -> Path:
        """A checkpoint `th1nker eval` reads: the model with its trained probe (no EMA)."""
        return ckpt_io.save_checkpoint(run_dir, self.update, self.model, None, self.optimizer, self.scheduler,
                                       self.generator, self.recipe.model_dump(mode="json"), {"rl": True})


def _supervised_recipe(recipe, rl: RLConfig):
    """The recipe of the supervised updates: a schedule without halting, no EMA, as many updates as RL asks."""
    data = recipe.model_dump(mode="json")
    data["schedule"]["kind"] = rl.supervised_schedule
    data["train"].update(ema=None, max_updates=rl.updates)
    return validate_recipe(data, "supervised updates of rl")
