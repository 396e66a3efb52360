"""Halting rules: after each thinking step, which examples stop thinking (their latest answer stands).

Each rule reads the latest output's logits, (B, C) or (B, L, C), and the previous step's, and returns a
(B,) bool. Halted examples cost nothing afterwards: schedules run their blocks on the live rows only.

    max_prob  every position's most likely class has probability >= threshold
    entropy   every position's predictive entropy (nats) <= threshold
    kl        the mean KL(now || previous step) over positions <= threshold (Huginn's zero-shot exit)
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

HaltRule = Callable[[Tensor, "Tensor | None"], Tensor]


def _per_position(logits: Tensor) -> Tensor:
    """(B, positions, C) log-probabilities."""
    logp = logits.float().log_softmax(-1)
    return logp.unsqueeze(1) if logp.dim() == 2 else logp


def max_prob(threshold: float) -> HaltRule:
    def rule(logits: Tensor, previous: Tensor | None) -> Tensor:
        return _per_position(logits).amax(-1).exp().amin(1) >= threshold
    return rule


def entropy(threshold: float) -> HaltRule:
    def rule(logits: Tensor, previous: Tensor | None) -> Tensor:
        logp = _per_position(logits)
        return (-(logp.exp() * logp).sum(-1)).amax(1) <= threshold
    return rule


def kl(threshold: float) -> HaltRule:
    def rule(logits: Tensor, previous: Tensor | None) -> Tensor:
        if previous is None or previous.shape != logits.shape:
            return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        now, before = _per_position(logits), _per_position(previous)
        return (now.exp() * (now - before)).sum(-1).mean(1) <= threshold
    return rule


RULES: dict[str, Callable[[float], HaltRule]] = {"max_prob": max_prob, "entropy": entropy, "kl": kl}


def make_halt(rule: str, threshold: float) -> HaltRule | None:
    """The rule `eval.halt` names (None for `none`)."""
    return None if rule == "none" else RULES[rule](threshold)
