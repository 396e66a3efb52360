"""Optimiser, learning-rate schedule (linear warm-up, cosine decay) and EMA of weights."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from th1nker.recipe import OptimizerConfig


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms, biases and embeddings (1-D or embedding weights)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def lr_factor(update: int, warmup: int, total: int, floor: float) -> float:
    """Multiplier of the base lr at `update`: linear warm-up, then cosine down to `floor`."""
    if update < warmup:
        return (update + 1) / warmup
    progress = min(1.0, (update - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimizerConfig, total: int):
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda u: lr_factor(u, cfg.warmup, total, cfg.min_lr_ratio))


def warmup_ema(decay: float):
    """EMA update whose decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates, so a
    short run's average is not dominated by the initial weights. Integer buffers (counters, indices)
    are copied, not averaged."""

    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        n = float(num_averaged)
        floats = [(e, p) for e, p in zip(ema_params, params) if e.is_floating_point()]
        for e, p in zip(ema_params, params):
            if not e.is_floating_point():
                e.copy_(p)
        if floats:
            averaged, current = zip(*floats)
            torch._foreach_lerp_(list(averaged), list(current), 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return update


def build_ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of the weights (what evaluation uses), or None."""
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=warmup_ema(decay), use_buffers=True)
