"""Rewards for a finished episode: correctness traded against compute."""

from __future__ import annotations

from torch import Tensor

from th1nker.recipe import RLConfig


def episode_reward(config: RLConfig, correct: Tensor, compute: Tensor) -> Tensor:
    """(B,) reward from (B,) bool `correct` and (B,) `compute` as a fraction of the fixed schedule's.

    linear: correct - lam * compute. blockdrop (BlockDrop's shaping): 1 - compute^2 when correct,
    -penalty when wrong. ratio: correct / compute (goal reached x 1 / computation; 0 for every failure).
    """
    right = correct.float()
    if config.reward == "linear":
        return right - config.lam * compute
    if config.reward == "blockdrop":
        return right * (1 - compute**2) - (1 - right) * config.penalty
    return right / compute.clamp_min(1e-6)
