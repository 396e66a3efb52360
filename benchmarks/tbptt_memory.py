"""Claim: with `window` and `progressive` truncation, peak memory of one update at 64 steps stays within
1.3x of 8 steps, while `full` backprop grows with the number of steps.

Measured: the peak of the activation memory autograd holds for backward during one update (every tensor
saved for backward, counted once per storage through `saved_tensors_hooks`, released when autograd frees
it), which is the memory truncation controls; the weights, the optimiser and the allocator are not in it.
"One update" is each mode's worst case: the largest gradient window the mode can draw (progressive:
`window` steps with gradients after the no-grad prefix). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ["train.ema=null", "tracking.enabled=false", "task.train=[64,64]", "train.batch_size=64",
             "train.tbptt.window=8"]


class SavedBytes:
    """Live and peak bytes of the tensors autograd has saved for backward."""

    def __init__(self):
        self.refs: dict[int, int] = {}
        self.live = self.peak = 0

    def pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if self.refs.get(key, 0) == 0:
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self.refs[key] = self.refs.get(key, 0) + 1
        return _Held(self, key, storage.nbytes(), t)

    @staticmethod
    def unpack(held: "_Held") -> torch.Tensor:
        return held.tensor


class _Held:
    def __init__(self, meter: SavedBytes, key: int, nbytes: int, tensor: torch.Tensor):
        self.meter, self.key, self.nbytes, self.tensor = meter, key, nbytes, tensor

    def __del__(self):
        self.meter.refs[self.key] -= 1
        if self.meter.refs[self.key] == 0:
            self.meter.live -= self.nbytes


def worst_plan(cfg, steps: int, rng) -> list:
    """The plan of `cfg.mode` that holds the most for backward: the longest gradient window it can draw."""
    from th1nker.plans import PLANS, Window

    if cfg.mode in ("full", "window"):
        return PLANS[cfg.mode](cfg, steps, rng)
    k = min(cfg.window, steps)
    return [Window(steps - k, False), Window(k, True)] if steps > k else [Window(k, True)]


def measure(mode: str, steps: int) -> float:
    """Peak MiB held for backward during one worst-case update."""
    from th1nker.recipe import load_recipe
    from th1nker.tasks import make_task
    from th1nker.train import loop
    from th1nker.train.loop import Trainer

    torch.set_num_threads(2)
    recipe = load_recipe(ROOT / "recipes" / "multistep.yaml",
                         OVERRIDES + [f"train.tbptt.mode={mode}", f"schedule.steps={steps}"])
    trainer = Trainer(recipe, make_task(recipe.task, 0))
    loop.PLANS = {**loop.PLANS, mode: worst_plan}
    meter = SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        trainer.train_update()
    return meter.peak / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    steps_list = [8, 64] if args.quick else [8, 16, 32, 64]
    result: dict = {"claim": "window/progressive peak memory at 64 steps <= 1.3x 8 steps; full grows",
                    "unit": "MiB held for backward, peak during one worst-case update", "peak_mib": {},
                    "ratio_64_over_8": {}}
    for mode in ("full", "window", "progressive", "last_k"):
        row = {str(s): round(measure(mode, s), 1) for s in steps_list}
        result["peak_mib"][mode] = row
        result["ratio_64_over_8"][mode] = round(row[str(steps_list[-1])] / row[str(steps_list[0])], 2)
    result["setup"] = "default recipe, batch 64 x 64 bits, dim 64, window 8"
    result["machine"] = f"{platform.machine()} {platform.system()}, python {sys.version.split()[0]}, torch {torch.__version__}"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
