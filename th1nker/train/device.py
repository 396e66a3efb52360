"""Where a model runs: the recipe's `train.device`, with `auto` = CUDA when there is one."""

from __future__ import annotations

import torch

from th1nker.errors import RecipeError


def pick_device(name: str) -> torch.device:
    """`auto` -> cuda if available else cpu; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RecipeError(f"train.device: '{name}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"train.device: '{name}' but this machine has no CUDA device; use auto or cpu")
    return device
