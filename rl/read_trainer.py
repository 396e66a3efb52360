"""RL over what to read: REINFORCE on the choosers of read blocks (which of the indexer's top-C memory blocks,
or which of the prior's top-C parts of a long input, to read)."""

from __future__ import annotations

import time

import torch

from th1nker.errors import RecipeError
from th1nker.loop import run_to_end
from th1nker.recipe import OptimizerConfig, RLConfig
from th1nker.rl.reward import episode_reward
from th1nker.rl.trainer import RLTrainer
from th1nker.train.evaluate import EVAL_SEED
from th1nker.train.optim import build_scheduler


def choosing_blocks(model) -> dict:
    """The read blocks of `model` that have a chooser (`choose: C`), by name."""
    return {name: b for name, b in model.blocks.items() if getattr(b, "chooser", None) is not None}


class ReadChoiceTrainer(RLTrainer):
    """Trains the `ReadChooser` of every read block with `choose` set; nothing else learns.

    An update thinks once, with the recipe's schedule, on `rl.episodes` examples of one difficulty
    (`rl.difficulties`, default the training range); every read samples its block from its chooser
    (`thought.explore`). An episode's reward is `episode_reward` of its final answer's correctness and
    its compute: the blocks it read over the blocks the top-k reads would read (top_k per call).
    REINFORCE with a leave-one-out baseline and an entropy bonus, as for the probe.
    """

    def __init__(self, model, task):
        recipe = model.recipe
        self.blocks = choosing_blocks(model)
        if not self.blocks:
            raise RecipeError("rl.policy: reads trains the chooser of a read block; give a read_longterm or "
                              "read_parts block `choose: C` (e.g. choose: 8)")
        self.recipe, self.task = recipe, task
        self.rl = rl = recipe.rl or RLConfig(policy="reads")
        if rl.alternate_every:
            raise RecipeError("rl.alternate_every: supervised updates alternate with rl.policy: blocks only; "
                              "set rl.alternate_every: null")
        self.supervised = None
        self.model = model.eval().requires_grad_(False)
        params = [p for b in self.blocks.values() for p in b.chooser.parameters()]
        for p in params:
            p.requires_grad_(True)
        self.optimizer = torch.optim.Adam(params, lr=rl.lr)
        self.scheduler = build_scheduler(self.optimizer, OptimizerConfig(lr=rl.lr, warmup=0), rl.updates)
        self.generator = torch.Generator().manual_seed(recipe.seed + 2)
        self.difficulties = rl.difficulties or list(range(recipe.task.train[0], recipe.task.train[1] + 1))
        self.update = 0

    def rl_update(self, batch=None, memory=None) -> dict[str, float]:
        """One update on a batch of the task (default: `rl.episodes` examples of a random difficulty);
        `memory`: an on-disk LongTermMemory every episode reads instead of its own pool."""
        g, device = self.generator, next(self.model.parameters()).device
        d = self.difficulties[int(torch.randint(len(self.difficulties), (1,), generator=g))]
        batch = (batch if batch is not None else self.task.batch(self.rl.episodes, d, g)).to(device)
        d = batch.difficulty if batch.difficulty is not None else d
        thought = self.model.start(batch, g)
        thought.explore = g
        if memory is not None:
            thought.longterm = memory
        thought = run_to_end(self.model, batch, generator=g, thought=thought)
        correct = self.task.score(self.model.prediction(thought), batch).to(device)
        reads = torch.stack([c.index >= 0 for c in thought.choices]).sum(0)  # one block per choosing call
        top_k = max(b.top_k for b in self.blocks.values())
        compute = reads / (reads * top_k).clamp_min(1)  # over the blocks top-k reads would read in those calls
        reward = episode_reward(self.rl, correct, compute)
        log_prob = torch.stack([c.log_prob for c in thought.choices]).sum(0)
        entropy = torch.stack([c.entropy for c in thought.choices]).mean(0)
        n = len(reward)
        advantage = reward - (reward.sum() - reward) / (n - 1)
        loss = -(advantage * log_prob).mean() - self.rl.entropy * entropy.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for b in self.blocks.values() for p in b.chooser.parameters()], 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.update += 1
        best = torch.stack([c.index == 0 for c in thought.choices]).float().mean()
        return {"return": reward.mean().item(), "accuracy": correct.float().mean().item(),
                "compute": compute.mean().item(), "entropy": entropy.mean().item(),
                "indexer_top1_share": best.item(), "difficulty": float(d)}


@torch.no_grad()
def compare_reads(model, task, difficulties: list[int], batch_size: int = 256, memory=None) -> dict:
    """Answer accuracy per difficulty when each read takes the indexer's top-1, its top-k (the recipe's
    top_k; named all_parts when read_parts blocks read every part), or the one block its chooser picks
    among the top-C; with blocks read per example and wall-clock seconds, each arm timed side by side
    on the same batches and initial latents. `memory`: an on-disk LongTermMemory every example reads
    instead of its own pool."""
    blocks = choosing_blocks(model)
    top_k = {name: b.top_k for name, b in blocks.items()}
    every = all(getattr(b.config, "parts", None) == b.top_k for b in blocks.values())
    arms = {"top_1": (False, 1), "all_parts" if every else f"top_{max(top_k.values())}": (False, None),
            "chooser": (True, None)}
    device = next(model.parameters()).device
    result = {arm: {} for arm in arms}
    try:
        for d in difficulties:
            full = task.eval_batch(d)
            sums = {arm: [0.0, 0.0, 0.0] for arm in arms}  # correct, blocks read, seconds
            for lo in range(0, len(full), batch_size):
                batch = full.rows(lo, lo + batch_size).to(device)
                for arm, (choosing, k) in arms.items():
                    for name, b in blocks.items():
                        b.choosing, b.top_k = choosing, k or top_k[name]
                    g = torch.Generator().manual_seed(EVAL_SEED + lo)
                    start = time.perf_counter()
                    thought = model.start(batch, g)
                    if memory is not None:
                        thought.longterm = memory
                    thought = run_to_end(model, batch, generator=g, thought=thought)
                    sums[arm][2] += time.perf_counter() - start
                    sums[arm][0] += task.score(model.prediction(thought), batch).float().sum().item()
                    pool = next(iter(blocks.values())).candidates(batch, memory)
                    per_call = 1 if choosing else min(k or max(top_k.values()), pool)
                    sums[arm][1] += per_call * len(batch) * thought.trace.count(next(iter(blocks)))
            for arm, (correct, read, seconds) in sums.items():
                result[arm][str(d)] = {"accuracy": correct / len(full), "blocks_read": read / len(full),
                                       "seconds": round(seconds, 4)}
    finally:
        for name, b in blocks.items():
            b.choosing, b.top_k = True, top_k[name]
    result["summary"] = {arm: {"accuracy": sum(r["accuracy"] for r in result[arm].values()) / len(difficulties),
                               "seconds": sum(r["seconds"] for r in result[arm].values())} for arm in arms}
    return result
