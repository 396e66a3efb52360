"""Halting rules against the RL-trained probe: accuracy against compute (block calls) and wall-clock
seconds, on the trained lengths and on strings 2x and 4x longer than any trained on.

Trains recipes/rl.yaml as benchmarks/rl_compute.py does (supervised with the fixed schedule, then the
probe by RL), then evaluates every arm on the same examples and initial latents:
  fixed     the fixed schedule with enough steps for the length (16 trained, 32 at 2x, 64 at 4x)
  max_prob / entropy / kl at several thresholds: the fixed schedule, each example stopping once its
            rule holds (at most 64 steps); halted examples run no more blocks
  probe     the learned policy (the probe schedule, greedy, at most 64 steps)
Compute is block calls per example (probe decisions not counted as calls); seconds are wall-clock
time of the unrolls on this machine (2 threads). Writes the plot to --plot.

    python benchmarks/halting.py [--quick] [--plot benchmarks/halting.png]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from rl_compute import QUICK, train_policy
from th1nker.halting import make_halt
from th1nker.train.evaluate import accuracy_by_steps

TRAINED, LONGER = [4, 8, 16, 24], [48, 96]
SWEEP = {"max_prob": [0.9, 0.99, 0.999], "entropy": [0.3, 0.1, 0.03], "kl": [1e-2, 1e-3, 1e-4]}
HORIZON = 64


def enough_steps(length: int) -> int:
    return 16 if length <= 24 else 32 if length <= 48 else 64


def arm(model, task, lengths, steps, halt=None, probe=False) -> dict:
    """{length: {accuracy, block_calls, seconds}} of one arm."""
    recipe = model.recipe
    kind = "probe" if probe else "fixed"
    model.recipe = recipe.model_copy(update={"schedule": recipe.schedule.model_copy(update={"kind": kind, "steps": steps})})
    try:
        r = accuracy_by_steps(model, task, lengths, [steps], recipe.eval.batch_size, halt=halt)
    finally:
        model.recipe = recipe
    return {str(d): {"accuracy": r["accuracy"][str(d)][str(steps)], "block_calls": r["compute"][str(d)]["mean_block_calls"],
                     "seconds": r["compute"][str(d)]["seconds"]} for d in lengths}


def summarise(rows: dict, lengths: list[int]) -> dict:
    n = len(lengths)
    return {k: sum(rows[str(d)][k] for d in lengths) / (1 if k == "seconds" else n) for k in ("accuracy", "block_calls", "seconds")}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharey=True)
    for col, group in enumerate(("trained", "2x", "4x")):
        for row, x in enumerate(("block_calls", "seconds")):
            ax = axes[row, col]
            for rule in SWEEP:
                pts = [result["arms"][f"{rule}:{t}"][group] for t in SWEEP[rule]]
                ax.plot([p[x] for p in pts], [p["accuracy"] for p in pts], marker="o", label=rule)
            for name, marker in (("fixed", "s"), ("probe", "*")):
                p = result["arms"][name][group]
                ax.scatter([p[x]], [p["accuracy"]], marker=marker, s=120, label=name, zorder=3)
            ax.set_title(f"{group} lengths" if row == 0 else "")
            ax.set_xlabel("mean block calls per example" if x == "block_calls" else "wall-clock seconds")
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("exact-match accuracy")
    axes[1, 0].set_ylabel("exact-match accuracy")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the script")
    parser.add_argument("--plot", type=Path, default=Path("halting.png"))
    args = parser.parse_args()
    overrides = ["tracking.enabled=false", "seed=0", *(QUICK if args.quick else [])]
    recipe, task, model, sup, rl = train_policy(overrides)
    groups = {"trained": TRAINED, "2x": [LONGER[0]], "4x": [LONGER[1]]}
    if args.quick:
        groups = {"trained": [4], "2x": [8], "4x": [16]}
    torch.manual_seed(0)
    arms = {"fixed": {}, "probe": {}}
    for group, lengths in groups.items():
        steps = enough_steps(max(lengths)) if not args.quick else 4
        arms["fixed"][group] = summarise(arm(model, task, lengths, steps), lengths)
        arms["probe"][group] = summarise(arm(model, task, lengths, HORIZON, probe=True), lengths)
        for rule, thresholds in SWEEP.items():
            for t in thresholds:
                rows = arm(model, task, lengths, HORIZON, halt=make_halt(rule, t))
                arms.setdefault(f"{rule}:{t}", {})[group] = summarise(rows, lengths)
    result = {"benchmark": "halting", "recipe": "rl.yaml", "overrides": overrides, "quick": args.quick,
              "groups": groups, "horizon_steps": HORIZON, "supervised_updates": sup["updates"], "rl_updates": rl["updates"],
              "arms": arms, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "machine": platform.processor() or platform.machine()}
    plot(result, args.plot)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
