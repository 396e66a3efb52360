"""The Gymnasium environment: think on one example, choosing which block runs next."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from th1nker.rl.batch_env import BlockChoiceVecEnv
from th1nker.train.evaluate import load_model


class BlockChoiceEnv(gym.Env):
    """One episode = thinking on one example with a trained, frozen Th1nker model.

    Build it from a recipe and a checkpoint (`gymnasium.make("th1nker/BlockChoice-v0", recipe=...,
    checkpoint=...)`) or from a `model` and `task`. Actions, masks (`action_masks()`), observations
    and rewards are those of `BlockChoiceVecEnv` with one episode; `reset(options={"batch": b})`
    thinks on the one example in `b`. The reward comes from `recipe.rl` (defaults when it has none).
    """

    metadata = {"render_modes": []}

    def __init__(self, recipe: str | Path | None = None, checkpoint: str | Path | None = None,
                 overrides: list[str] | tuple[str, ...] = (), *, model=None, task=None,
                 difficulties: list[int] | None = None):
        if model is None:
            if recipe is None:
                raise ValueError("BlockChoiceEnv needs recipe= (and checkpoint=) or model= and task=")
            _, task, model = load_model(Path(recipe), None if checkpoint is None else Path(checkpoint), list(overrides))
        self.episodes = BlockChoiceVecEnv(model, task, 1, difficulties=difficulties)
        self.observation_space = self.episodes.observation_space
        self.action_space = self.episodes.action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self.episodes.reset(int(self.np_random.integers(2**62)), options)
        return obs[0], _first(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.episodes.step(np.array([action]))
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), _first(info)

    def action_masks(self) -> np.ndarray:
        """(n_actions + 1,) bool: the legal next blocks, stop last."""
        return self.episodes.action_masks()[0]


def _first(info: dict) -> dict:
    return {k: v[0].item() for k, v in info.items()}
