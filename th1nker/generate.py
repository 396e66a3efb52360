"""Text generation from a language-model recipe (task text_lm): one run of the thinking loop per new token.

Cached, the first run covers the prompt and each later run only the new token: every causal block
call keeps the keys and values of the earlier tokens (`DecodeCache`), so it computes what the run over
the whole sequence computes. Uncached, every token reruns the whole sequence.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from th1nker.errors import DataError
from th1nker.loop import StepEnd, think
from th1nker.omni.layers import reserve_rotary, static_capacity
from th1nker.omni.thinker import sample
from th1nker.tasks.base import Batch
from th1nker.thought import DecodeCache

EXIT_CAP = 64  # most iterations a token may take under --exit when --steps is not given


def encode_text(tokenizer, text: str) -> list[int]:
    """Ids of `text` as the text_lm stream holds it: every line ends with eos (the newline)."""
    lines = text.split("\n")
    ids = [i for line in lines[:-1] for i in tokenizer.encode(line, eos=True)] + tokenizer.encode(lines[-1])
    if not ids:
        raise DataError("--prompt is empty; give some text to continue, e.g. --prompt 'def '")
    return ids


def decode_text(tokenizer, ids: list[int]) -> str:
    """The text of `ids`, eos read as a newline."""
    lines, line = [], []
    for i in ids:
        if i == tokenizer.eos_id:
            lines.append(line)
            line = []
        else:
            line.append(i)
    return "\n".join(tokenizer.decode(x) for x in [*lines, line])


def kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """KL(p || q) per row, from logits."""
    p, q = p_logits.float().log_softmax(-1), q_logits.float().log_softmax(-1)
    return (p.exp() * (p - q)).sum(-1)


@torch.no_grad()
def next_logits(model, ids: Tensor, steps: int, decoding: DecodeCache | None = None,
                exit_kl: float | None = None) -> tuple[Tensor, int]:
    """(logits of the token after `ids` (B, T), iterations run): `steps` thinking steps, or fewer when
    `exit_kl` is set and the last position's prediction moved less than that (KL) in one step."""
    batch = Batch({"text": ids}, ids)
    thought = model.start(batch, torch.Generator().manual_seed(model.recipe.seed))
    thought.decoding = decoding
    prev, used = None, steps
    for event in think(model, batch, steps=steps, thought=thought):
        if not isinstance(event, StepEnd):
            continue
        logits = thought.latest[thought.last_block].logits[:, -1]
        if exit_kl is not None and prev is not None and bool((kl(logits, prev) < exit_kl).all()):
            used = thought.step
            break
        prev = logits
    if decoding is not None:
        if used < steps:  # later iterations see the exited token's latest state
            for block in model.blocks:
                decoding.pad(block, thought.trace.count(block), ids.shape[1])
        decoding.advance(ids.shape[1])
    return logits, used


def thinker_lm_of(model):
    """The ThinkerLM of a recipe whose whole step is one `thinker_lm` block (what `th1nker generate` and
    `th1nker convert to-hf` use as it is), else None."""
    calls = model.calls
    if len(calls) == 1 and model.recipe.model.blocks[calls[0].block].kind == "thinker_lm":
        return model.blocks[calls[0].block].lm
    return None


def check_cacheable(model) -> None:
    """The cached path draws each token's initial states alone: they must not depend on the position."""
    for name, cfg in model.recipe.model.states.items():
        if cfg.slots == "input" and cfg.init != "learned" and cfg.scale > 0:
            raise DataError(f"model.states.{name}: init '{cfg.init}' draws a different start per position, so "
                            "token-by-token decoding cannot match the whole sequence's; use init: learned (or "
                            "scale: 0), or generate with --no-cache")


def compiled_cache(model, tokens: int, device: torch.device, fuse_steps: bool = True) -> DecodeCache:
    """Static caches for `tokens` positions (`static_capacity`, at most the smallest block context) whose
    one-token steps run compiled (a whole fixed step as one graph with `fuse_steps`, where its calls allow
    it), with the rotary tables those steps index built now."""
    contexts = [b.config.context for b in model.blocks.values() if getattr(b.config, "context", None)]
    capacity = static_capacity(tokens, min(contexts, default=1 << 62))
    reserve_rotary(model, capacity, device)
    return DecodeCache.static(capacity, device, compiled=True, fuse_steps=fuse_steps)


@torch.no_grad()
def generate(model, ids: list[int], max_new_tokens: int, steps: int, *, use_cache: bool = True,
             compile: bool = False, exit_kl: float | None = None, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, seed: int = 0,
             fuse_steps: bool = True) -> Iterator[tuple[int, int]]:
    """Yield (token, iterations it took) for up to `max_new_tokens` tokens after `ids`.

    `compile`: the KV caches are static and a new token's thinking steps run compiled (built at their
    first use; the prompt runs eagerly): each fixed step as one graph (`th1nker.fused_step`), or, with
    `fuse_steps=False` or a call that cannot join it, each block's step as its own graph."""
    if compile and not use_cache:
        raise DataError("--compile decodes through the KV cache; drop --no-cache (or --compile)")
    model.eval()
    if use_cache:
        check_cacheable(model)
    device = next(model.parameters()).device
    seq = torch.tensor([ids], device=device)
    decoding = None
    if use_cache:
        decoding = compiled_cache(model, len(ids) + max_new_tokens, device, fuse_steps) if compile else DecodeCache()
    g = torch.Generator(device=device).manual_seed(seed)
    feed = seq
    for n in range(max_new_tokens):
        # the prompt's run fills every iteration's cache; the tokens after it may exit early
        logits, used = next_logits(model, feed if use_cache else seq, steps, decoding, exit_kl if n else None)
        token = sample(logits, temperature, top_k, top_p, g)
        seq = torch.cat([seq, token[:, None]], dim=1)
        feed = token[:, None]
        yield int(token), used
