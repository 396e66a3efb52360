"""Hierarchical vs flat compression at the same total ratio (16x), and vs mean pooling.

kv_facts blocks of 8 facts (a one-symbol key and its value: 16 tokens) are compressed to ONE latent each
inside recipes/longterm.yaml (everything else equal, trained end to end through read_longterm) by:
hierarchical 4x4 (each pair of facts -> 1 latent, then 4 such latents -> 1), flat 16x (one
compression token reads all 16 tokens; also with two process layers, as many weights as 4x4),
and mean pooling of the 16 token embeddings (+ positions), which keeps which values occur but not
which key each belongs to. The model answers questions about one fact of a pool of 1 or 2 blocks, so
its accuracy measures what the single latent kept.

    python benchmarks/memory_compress.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from th1nker.recipe import load_recipe
from th1nker.tasks.kv_facts import KVFacts
from th1nker.train.evaluate import accuracy_by_steps
from th1nker.train.loop import Trainer

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "longterm.yaml"
VARIANTS = {
    "hierarchical_4x4": "{chunk: 16, levels: [{segment: 4, ratio: 4}, {segment: 4, ratio: 4}], heads: 8}",
    "flat_16x": "{chunk: 16, levels: [{segment: 16, ratio: 16}], heads: 8}",
    "flat_16x_2_layers": "{chunk: 16, levels: [{segment: 16, ratio: 16}], heads: 8, layers: 2}",  # as many weights
    "mean_pool_16x": "{chunk: 16, levels: [{segment: 16, ratio: 16}], method: mean}",
}


def run(variant: str, updates: int, examples: int) -> dict:
    torch.set_num_threads(1)
    recipe = load_recipe(RECIPE, [f"model.blocks.recall.compress={VARIANTS[variant]}", "task.train=[1,2]",
                                  "task.eval=[1,2]", f"task.eval_examples={examples}", f"train.max_updates={updates}",
                                  "train.max_minutes=null", "tracking.enabled=false"])
    task = KVFacts(recipe.task, recipe.seed, facts=8, key_len=1)
    trainer = Trainer(recipe, task)
    start = time.perf_counter()
    while trainer.update < updates:
        trainer.train_update()
    minutes = (time.perf_counter() - start) / 60
    result = accuracy_by_steps(trainer.eval_model, task, recipe.task.eval, [recipe.schedule.steps])
    compressor = trainer.model.blocks["recall"].compressor
    return {"accuracy_by_blocks": {d: acc[str(recipe.schedule.steps)] for d, acc in result["accuracy"].items()},
            "compressor_params": sum(p.numel() for p in compressor.parameters()), "train_minutes": round(minutes, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few updates per variant, to check the script")
    parser.add_argument("--updates", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="variants trained at once (one thread each)")
    args = parser.parse_args()
    updates = args.updates or (20 if args.quick else 3000)
    examples = 64 if args.quick else 1024
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = {v: pool.submit(run, v, updates, examples) for v in VARIANTS}
        results = {v: f.result() for v, f in futures.items()}
    print(json.dumps({
        "benchmark": "memory_compress",
        "what": "kv_facts answer accuracy (chance 1/16) when each 16-token block of 8 facts is compressed to one "
                "latent; rows: blocks in the pool",
        "updates": updates, "eval_examples": examples, "results": results, "threads_per_variant": 1,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
