"""Halting rules: after each thinking step, which examples stop thinking (their latest answer stands).

Each rule reads the latest output (its logits, (B, C) or (B, L, C), and its halting logits when the
output block has a halting head) and the previous step's, and returns a (B,) bool. Halted examples
cost nothing afterwards: schedules run their blocks on the live rows only.

    max_prob  every position's most likely class has probability >= threshold
    entropy   every position's predictive entropy (nats) <= threshold
    kl        the mean KL(now || previous step) over positions <= threshold (Huginn's zero-shot exit)
    head      the output block's halting head (`halt: true`, trained with BCE on "exactly right", as
              TRM's) says right with probability >= threshold (a Q head: its halt value)
    q         the output block's Q head (`halt_mode: q`, HRM's Q-learning halting): Q(halt) > Q(continue)
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from th1nker.errors import DataError
from th1nker.thought import Output

HaltRule = Callable[[Output, "Output | None"], Tensor]


def _per_position(logits: Tensor) -> Tensor:
    """(B, positions, C) log-probabilities."""
    logp = logits.float().log_softmax(-1)
    return logp.unsqueeze(1) if logp.dim() == 2 else logp


def max_prob(threshold: float) -> HaltRule:
    def rule(out: Output, previous: Output | None) -> Tensor:
        return _per_position(out.logits).amax(-1).exp().amin(1) >= threshold
    return rule


def entropy(threshold: float) -> HaltRule:
    def rule(out: Output, previous: Output | None) -> Tensor:
        logp = _per_position(out.logits)
        return (-(logp.exp() * logp).sum(-1)).amax(1) <= threshold
    return rule


def kl(threshold: float) -> HaltRule:
    def rule(out: Output, previous: Output | None) -> Tensor:
        if previous is None or previous.logits.shape != out.logits.shape:
            return torch.zeros(out.logits.shape[0], dtype=torch.bool, device=out.logits.device)
        now, before = _per_position(out.logits), _per_position(previous.logits)
        return (now.exp() * (now - before)).sum(-1).mean(1) <= threshold
    return rule


def head(threshold: float) -> HaltRule:
    def rule(out: Output, previous: Output | None) -> Tensor:
        if out.halt is None:
            raise DataError(f"eval.halt.rule: head reads a halting head, but block '{out.block}' has none; "
                            f"set model.blocks.{out.block}.halt: true (and train it) or pick another rule")
        logit = out.halt.float()
        return torch.sigmoid(logit if logit.dim() == 1 else logit[:, 0]) >= threshold
    return rule


def q(threshold: float) -> HaltRule:
    def rule(out: Output, previous: Output | None) -> Tensor:
        if out.halt is None or out.halt.dim() != 2:
            raise DataError(f"eval.halt.rule: q reads a Q-halting head, but block '{out.block}' has none; "
                            f"set model.blocks.{out.block}.halt: true and halt_mode: q (and train it) or pick another rule")
        return out.halt[:, 0] > out.halt[:, 1]
    return rule


RULES: dict[str, Callable[[float], HaltRule]] = {"max_prob": max_prob, "entropy": entropy, "kl": kl, "head": head, "q": q}


def make_halt(rule: str, threshold: float) -> HaltRule | None:
    """The rule `eval.halt` names (None for `none`)."""
    return None if rule == "none" else RULES[rule](threshold)
