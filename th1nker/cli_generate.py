"""`th1nker generate`: stream text from a trained language-model recipe (task text_lm)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from th1nker.errors import DataError, RecipeError


def parse_exit(text: str | None) -> float | None:
    """'kl:1e-3' -> 1e-3 (None when not given)."""
    if text is None:
        return None
    kind, _, value = text.partition(":")
    try:
        eps = float(value)
    except ValueError:
        eps = -1.0
    if kind != "kl" or not eps > 0:
        raise RecipeError(f"--exit {text!r}: expected kl:EPS with EPS > 0, e.g. --exit kl:1e-3")
    return eps


def register(app: typer.Typer, user_errors) -> None:
    """Add `generate` to the th1nker app."""

    @app.command(epilog='Example: th1nker generate recipes/thinking_lm.yaml --checkpoint runs/lm --prompt "def " '
                        '--steps 8 --max-new-tokens 64')
    @user_errors
    def generate(recipe: Path,
                 checkpoint: Path = typer.Option(..., help="run or checkpoint directory of `th1nker train`"),
                 prompt: str = typer.Option(..., help="text to continue (\\n in it starts a new line)"),
                 steps: Optional[int] = typer.Option(None, min=1, help="thinking iterations per token "
                                                     "(default: the recipe's schedule.steps)"),
                 exit_: Optional[str] = typer.Option(None, "--exit", help="kl:EPS: a token stops iterating once "
                                                     "its prediction moves less than EPS (KL) in one iteration"),
                 max_new_tokens: int = typer.Option(64, min=1, help="tokens to generate"),
                 temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy"),
                 top_k: Optional[int] = typer.Option(None, min=1, help="sample among the k likeliest tokens"),
                 top_p: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="nucleus sampling mass"),
                 seed: int = typer.Option(0, help="sampling seed"),
                 no_cache: bool = typer.Option(False, help="recompute the whole sequence for every token"),
                 compile_: bool = typer.Option(False, "--compile", help="decode through a static KV cache with compiled "
                                               "steps (also when the recipe says eval.compile: true); the first "
                                               "call pays for compiling"),
                 set_: Optional[list[str]] = typer.Option(None, "--set", help="override a recipe field")):
        """Continue PROMPT token by token, printing text as it comes."""
        from th1nker.generate import EXIT_CAP, decode_text, encode_text, generate as run, thinker_lm_of
        from th1nker.recipe import load_recipe
        from th1nker.train.evaluate import load_model

        exit_kl = parse_exit(exit_)
        compile_ = compile_ or load_recipe(recipe, set_ or []).eval.compile
        # generation compiles its own static-shape steps: the blocks' dynamic-shape compile would trace around them
        recipe_, task, model = load_model(recipe, checkpoint, [*(set_ or []), "eval.compile=false"])
        if task.tokenizer is None or "text" not in model.encoders:
            raise DataError(f"{recipe}: generate needs a text language-model recipe (task.kind: text_lm)")
        ids = encode_text(task.tokenizer, prompt.replace("\\n", "\n"))
        lm = thinker_lm_of(model)
        if lm is not None:
            lm.compile_generate = compile_
            return _thinker_lm(lm, task.tokenizer, ids, exit_kl, steps, max_new_tokens,
                               temperature, top_k, top_p, seed, no_cache)
        steps = steps or (EXIT_CAP if exit_kl else recipe_.schedule.steps)
        new, iters, shown = [], [], decode_text(task.tokenizer, ids)
        typer.echo(shown, nl=False)
        start = time.perf_counter()
        for token, used in run(model, ids, max_new_tokens, steps, use_cache=not no_cache, compile=compile_,
                               exit_kl=exit_kl, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed):
            new.append(token)
            iters.append(used)
            text = decode_text(task.tokenizer, ids + new)
            typer.echo(text[len(shown):], nl=False)
            shown = text
        seconds = time.perf_counter() - start
        typer.echo("")
        typer.echo(f"[{len(new)} tokens in {seconds:.2f} s, {len(new) / seconds:.1f} tokens/s, "
                   f"{sum(iters) / len(iters):.1f} iterations per token, cache {'off' if no_cache else 'on'}"
                   f"{', compiled static cache (compiling included)' if compile_ else ''}]", err=True)


def _thinker_lm(lm, tokenizer, ids, exit_kl, steps, max_new_tokens, temperature, top_k, top_p, seed, no_cache):
    """A thinker_lm recipe: ThinkerLM.generate itself (one forward pass per token, its own KV cache)."""
    import torch

    from th1nker.generate import decode_text

    if exit_kl is not None or (steps or 1) != 1:
        raise RecipeError("--steps / --exit: a thinker_lm recipe runs one forward pass per token; drop them")
    if len(ids) + max_new_tokens > lm.config.context:
        raise DataError(f"--prompt ({len(ids)} tokens) + --max-new-tokens {max_new_tokens} exceed the model's "
                        f"context {lm.config.context}; shorten the prompt or ask for fewer tokens")
    start = time.perf_counter()
    out = lm.generate(torch.tensor([ids], device=next(lm.parameters()).device), max_new_tokens, temperature,
                      top_k, top_p, use_cache=not no_cache, seed=seed)
    seconds = time.perf_counter() - start
    new = out[0, len(ids):].tolist()
    typer.echo(decode_text(tokenizer, ids + new))
    typer.echo(f"[{len(new)} tokens in {seconds:.2f} s, {len(new) / seconds:.1f} tokens/s, ThinkerLM.generate, "
               f"cache {'off' if no_cache else 'on'}"
               f"{', compiled static cache (compiling included)' if lm.compile_generate and not no_cache else ''}]",
               err=True)
