"""Training speed options: `train.precision` (autocast) and `train.compile` (torch.compile)."""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import torch
from torch import nn


def autocast(precision: str, device: torch.device):
    """The context a forward runs in: bf16 autocast on CPU or CUDA, or none (fp32).
    `auto` is bf16 on CUDA and fp32 elsewhere."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16" and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def compile_blocks(model: nn.Module, field: str = "train.compile") -> bool:
    """Compile each block of `model` (its forward over the thought) in place with dynamic shapes, so a
    new step count, batch or sequence length does not compile it again, and make any ThinkerLM in it
    generate through its compiled static-cache decode step (its own `generate` bypasses the blocks).
    Returns False, after one warning naming `field`, where torch.compile is unavailable (then the model
    stays eager)."""
    from th1nker.omni.thinker import ThinkerLM

    try:
        import torch._dynamo  # noqa: F401  (fails where dynamo is not supported)
        import torch.fx.experimental._config as fx_config

        # Sizes that happen to be equal (a batch of 8 strings of 8 bits) must not become a guard that
        # recompiles when they differ.
        fx_config.use_duck_shape = False
        for block in model.blocks.values():
            block.compile(dynamic=True)
        for lm in (m for m in model.modules() if isinstance(m, ThinkerLM)):
            lm.compile_generate = True
    except Exception as e:  # platform-dependent: missing compiler, unsupported Python, ...
        warnings.warn(f"{field}: torch.compile is unavailable here ({type(e).__name__}: {e}); "
                      "running eagerly", stacklevel=2)
        return False
    return True


def compiled_graphs() -> int:
    """Graphs torch.compile has built in this process so far (each recompile adds one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
