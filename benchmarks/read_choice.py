"""RL over what to read: answer accuracy when each long-term read takes ONE block chosen by a learned
chooser among the indexer's top-8, against reading the indexer's top-1 and its top-4.

Takes a supervised run of recipes/read_choice.yaml (`th1nker train recipes/read_choice.yaml`; the same
training as longterm.yaml) and an on-disk store of 10^4 fresh blocks (4 * 10^4 facts with distinct keys)
that every question reads; trains the chooser by RL (REINFORCE, the recipe's `rl` section: ratio
reward) on questions about half of the stored facts (or, --train-on pools, on the recipe's pools), then
compares the three ways to read on questions about the other half, and on the recipe's held-out pools.
Each arm runs the same batches with the same initial latents, timed side by side. Prints one JSON object.

    python benchmarks/read_choice.py RUN [--updates N] [--blocks 10000] [--questions 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from th1nker.memory import LongTermMemory
from th1nker.memory.chooser import ReadChooser
from th1nker.rl.read_trainer import ReadChoiceTrainer, compare_reads
from th1nker.tasks.base import Batch
from th1nker.train.evaluate import load_model

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "read_choice.yaml"


class StoreQuestions:
    """Questions about the facts `facts` of one on-disk store, as a task whose eval batches `compare_reads`
    reads; `batch` draws training questions from them."""

    def __init__(self, task, keys, values, facts: torch.Tensor, n: int, seed: int = 3):
        self.task, self.keys, self.values, self.facts = task, keys, values, facts
        g = torch.Generator().manual_seed(seed)
        asked = facts[torch.randint(0, len(facts), (n,), generator=g)]
        self.questions, self.answers = keys[asked], values[asked]

    def eval_batch(self, difficulty: int, n: int | None = None) -> Batch:
        return Batch({"text": self.questions}, self.answers, difficulty=difficulty)

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        asked = self.facts[torch.randint(0, len(self.facts), (n,), generator=generator)]
        return Batch({"text": self.keys[asked]}, self.values[asked], difficulty=difficulty)

    def score(self, prediction, batch):
        return self.task.score(prediction, batch)


def build_store(path: Path, block, ids: torch.Tensor) -> LongTermMemory:
    with torch.no_grad():
        latents = torch.cat([block.compressor(ids[lo:lo + 1024]) for lo in range(0, len(ids), 1024)])
        store = LongTermMemory.create(path, block.indexer.key_dim, latents[0].numel(), key_vectors=block.compressor.latents)
        for lo in range(0, len(latents), 4096):
            store.append(block.indexer.key(latents[lo:lo + 4096]), latents[lo:lo + 4096].flatten(1))
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a supervised run (or checkpoint) of recipes/read_choice.yaml")
    parser.add_argument("--updates", type=int, default=None, help="RL updates (default: the recipe's rl.updates)")
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--train-on", choices=["store", "pools"], default="store",
                        help="RL episodes: questions about half of the store's facts (read from the store), or the "
                             "recipe's pools (rl.difficulties)")
    parser.add_argument("--reinit-chooser", action="store_true",
                        help="start RL from a freshly initialised chooser (supervised training never trains it; a "
                             "run made before the chooser's current initialisation holds an older one)")
    parser.add_argument("--set", action="append", default=[], help="override a recipe field (repeatable)")
    args = parser.parse_args()
    overrides = ["tracking.enabled=false", *args.set] + ([f"rl.updates={args.updates}"] if args.updates else [])
    recipe, task, model = load_model(RECIPE, args.run, overrides)
    block = model.blocks["recall"]
    if args.reinit_chooser:
        torch.manual_seed(recipe.seed)
        block.chooser = ReadChooser(recipe.model.dim).to(next(model.parameters()).device)
    keys, values, ids = task.pool(args.blocks, torch.Generator().manual_seed(7))
    facts = torch.randperm(len(keys), generator=torch.Generator().manual_seed(8))
    half = len(facts) // 2  # RL asks about half of the stored facts; the comparison about the other half
    train_questions = StoreQuestions(task, keys, values, facts[:half], args.questions)
    held_out = StoreQuestions(task, keys, values, facts[half:], args.questions)
    trainer = ReadChoiceTrainer(model, task)
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp) / "mem", block, ids)
        before = compare_reads(model, held_out, [args.blocks], recipe.eval.batch_size, memory=store)
        start, curve = time.perf_counter(), []
        g = torch.Generator().manual_seed(9)
        while trainer.update < trainer.rl.updates:
            source = args.train_on
            batch = train_questions.batch(trainer.rl.episodes, args.blocks, g) if source == "store" else None
            metrics = trainer.rl_update(batch, store if source == "store" else None)
            if trainer.update % 25 == 0:
                curve.append({"update": trainer.update, **{k: round(v, 4) for k, v in metrics.items()}})
        rl_minutes = (time.perf_counter() - start) / 60
        from_store = compare_reads(model, held_out, [args.blocks], recipe.eval.batch_size, memory=store)
    in_pool = compare_reads(model, task, recipe.task.eval, recipe.eval.batch_size)
    print(json.dumps({
        "benchmark": "read_choice", "run": str(args.run), "rl": recipe.rl.model_dump(mode="json"),
        "rl_minutes": round(rl_minutes, 2), "rl_curve": curve,
        "what": "answer accuracy reading the indexer's top-1, its top-4, or one block the chooser picks among "
                "the top-8 (blocks_read: per example over the recipe's 2 steps); in-pool: held-out pools of "
                "16 and 64 blocks with hard negatives; store: one on-disk store of fresh blocks",
        "rl_trained_on": args.train_on, "store_blocks": args.blocks, "store_questions": args.questions,
        "from_store_untrained_chooser": before, "from_store": from_store, "in_pool": in_pool,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
