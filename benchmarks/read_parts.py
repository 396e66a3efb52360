"""RL over which part of a long input to read: answer accuracy when each read takes ONE part of a
kv_document (8 parts) chosen by a learned chooser, against the prior's top-1 part and every part.

Takes a supervised run of recipes/read_parts.yaml (`th1nker train recipes/read_parts.yaml`); compares
the three ways to read on the recipe's held-out evaluation documents (task.eval, `--examples` each)
with the chooser untrained (= the prior's top-1), trains the chooser by RL (ReadChoiceTrainer: the
recipe's `rl` section, ratio reward, on freshly drawn training documents), and compares again. Also
reports how often the part read at the last step holds the asked fact. Each arm runs the same batches
with the same initial latents, timed side by side. Prints one JSON object.

    python benchmarks/read_parts.py RUN [--updates N] [--examples 1024] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from th1nker.loop import run_to_end
from th1nker.rl.read_trainer import ReadChoiceTrainer, compare_reads
from th1nker.train.evaluate import EVAL_SEED, load_model

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "read_parts.yaml"


@torch.no_grad()
def right_part(model, task, difficulty: int, block: str = "part") -> dict[str, float]:
    """Share of questions whose part read at the last step holds the asked fact, per way of reading."""
    b = model.blocks[block]
    batch = task.eval_batch(difficulty)
    facts = batch.inputs["document"].view(len(batch), b.config.parts, -1, 5)
    holds = (facts[..., :4] == batch.inputs["text"][:, None, None, :]).all(-1).any(-1)  # (B, parts)
    out = {}
    for arm, choosing in (("top_1", False), ("chooser", True)):
        b.choosing, top_k, b.top_k = choosing, b.top_k, 1
        thought = run_to_end(model, batch, generator=torch.Generator().manual_seed(EVAL_SEED))
        b.choosing, b.top_k = True, top_k
        out[arm] = holds.gather(1, thought.reads[block]).any(1).float().mean().item()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a supervised run (or checkpoint) of recipes/read_parts.yaml")
    parser.add_argument("--updates", type=int, default=None, help="RL updates (default: the recipe's rl.updates)")
    parser.add_argument("--examples", type=int, default=1024, help="held-out documents per evaluated length")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="override a recipe field (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = ["tracking.enabled=false", f"task.eval_examples={args.examples}", *args.set]
    overrides += [f"rl.updates={args.updates}"] if args.updates else []
    recipe, task, model = load_model(RECIPE, args.run, overrides)
    model.eval()
    lengths = recipe.task.eval
    before = compare_reads(model, task, lengths, recipe.eval.batch_size)
    before_right = {str(d): right_part(model, task, d) for d in lengths}
    trainer = ReadChoiceTrainer(model, task)
    start, curve = time.perf_counter(), []
    while trainer.update < trainer.rl.updates:
        metrics = trainer.rl_update()
        if trainer.update % 25 == 0:
            curve.append({"update": trainer.update, **{k: round(v, 4) for k, v in metrics.items()}})
    rl_minutes = (time.perf_counter() - start) / 60
    after = compare_reads(model, task, lengths, recipe.eval.batch_size)
    after_right = {str(d): right_part(model, task, d) for d in lengths}
    print(json.dumps({
        "benchmark": "read_parts", "run": str(args.run), "rl": recipe.rl.model_dump(mode="json"),
        "rl_updates": trainer.update, "rl_minutes": round(rl_minutes, 2), "rl_curve": curve,
        "what": "answer accuracy on held-out kv_document questions reading, at each of the recipe's 2 steps, the "
                "prior's top-1 part, every part (all_parts), or the one part the chooser picks among the 8 "
                "(blocks_read: parts read per question over the 2 steps); right_part: share of questions whose "
                "part read at the last step holds the asked fact",
        "examples_per_length": args.examples, "untrained_chooser": before, "untrained_right_part": before_right,
        "after_rl": after, "after_rl_right_part": after_right,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
