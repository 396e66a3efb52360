"""Check (GPU only): no unexpected host sync in one training update and one generation on CUDA.

Needs a CUDA device; not a test. Runs, after a warm-up, one Trainer update of the default recipe and
cached `ThinkerLM.generate` (eager, and through the compiled static-cache step) under `torch.cuda.set_sync_debug_mode("warn")`, records where each sync
came from, and counts as expected only the trainer's once-per-update check (`_optimizer_step`: the
non-finite skip and the logged numbers) and generation's stop check (`done.all()`). With --strict the
same runs happen under mode "error", which raises at the first sync of any kind. Prints one JSON object;
exit status 1 when an unexpected sync was seen.

    python benchmarks/cuda_sync_check.py
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ("_optimizer_step", "done.all()")


def syncs_of(fn) -> Counter:
    """Where the syncs during fn() came from: 'file:line: code' of the innermost th1nker frame."""
    seen: Counter = Counter()

    def record(message, category, *args, **kwargs):
        frames = [f for f in traceback.extract_stack() if "th1nker" in f.filename or "blocks" in f.filename]
        where = next((f for f in reversed(frames) if "cuda_sync_check" not in f.filename), None)
        names = {f.name for f in frames} | {(f.line or "").strip() for f in frames}
        tag = "expected" if any(e in n for e in EXPECTED for n in names) else "unexpected"
        seen[f"{tag} {Path(where.filename).name}:{where.lineno}: {where.line}" if where else f"{tag} {message}"] += 1

    with warnings.catch_warnings():  # restores showwarning on leaving
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return seen


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("cuda_sync_check.py needs a CUDA device")
    from th1nker.omni.thinker import ThinkerLM
    from th1nker.recipe import load_recipe
    from th1nker.tasks import make_task
    from th1nker.train.loop import Trainer

    recipe = load_recipe(ROOT / "recipes" / "multistep.yaml",
                         ["train.device=cuda", "train.precision=bf16", "tracking.enabled=false"])
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    trainer.train_update()  # warm-up: first-call allocations and lazy initialisation
    lm = ThinkerLM().cuda().eval()
    prompt = torch.randint(0, lm.config.vocab, (2, 16), device="cuda")
    lm.generate(prompt, 8)
    lm.generate(prompt, 64, compile=True)  # builds the compiled static-cache step (CUDA graphs)
    results = {"train_update": syncs_of(trainer.train_update),
               "generate_64_tokens_eos": syncs_of(lambda: lm.generate(prompt, 64, eos_id=0)),
               "generate_64_tokens": syncs_of(lambda: lm.generate(prompt, 64)),
               "generate_64_tokens_compiled": syncs_of(lambda: lm.generate(prompt, 64, compile=True))}
    strict = "--strict" in sys.argv
    if strict:
        torch.cuda.set_sync_debug_mode("error")
        lm.generate(prompt, 64)  # no eos: no stop check, so no sync at all is allowed
        torch.cuda.set_sync_debug_mode("default")
    unexpected = sum(n for r in results.values() for k, n in r.items() if k.startswith("unexpected"))
    print(json.dumps({"check": "cuda_sync", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                      **{k: dict(v) for k, v in results.items()}, "unexpected_syncs": unexpected,
                      "strict_generate_passed": strict or None}))
    sys.exit(1 if unexpected else 0)


if __name__ == "__main__":
    main()
