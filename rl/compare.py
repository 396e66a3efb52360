"""The learned policy against the fixed schedule: accuracy, compute and thinking steps per difficulty."""

from __future__ import annotations

import time

import torch

from th1nker.rl.batch_env import BlockChoiceVecEnv
from th1nker.rl.rollout import play
from th1nker.schedule import FixedSchedule
from th1nker.train.evaluate import EVAL_SEED


@torch.no_grad()
def compare_policies(model, task, difficulties: list[int], batch_size: int = 256) -> dict:
    """{"fixed"|"policy": {difficulty: {accuracy, compute, steps}}, "summary": ...} on the eval sets.

    fixed: the recipe's `schedule.step`, `schedule.steps` times. policy: the probe, greedy, as the probe
    schedule runs it (at most `schedule.steps` steps). Compute is in block-cost units (probe calls
    included), block calls per example, and wall-clock seconds of each arm's unrolls (timed side by
    side, batch by batch); both start from the same initial latents.
    """
    sched = model.recipe.schedule
    probe = model.blocks[sched.probe]
    device = next(model.parameters()).device
    result = {"fixed": {}, "policy": {}}
    for d in difficulties:
        full = task.eval_batch(d)
        runs, seconds = {"fixed": [], "policy": []}, {"fixed": 0.0, "policy": 0.0}
        for lo in range(0, len(full), batch_size):
            batch = full.rows(lo, lo + batch_size).to(device)
            seed = EVAL_SEED + lo
            start = time.perf_counter()
            thought = model.think(batch, FixedSchedule(sched.step), sched.steps, torch.Generator().manual_seed(seed))
            seconds["fixed"] += time.perf_counter() - start
            runs["fixed"].append((task.score(model.prediction(thought), batch), thought.cost,
                                  torch.full_like(thought.cost, sched.steps), thought.calls))
            start = time.perf_counter()
            env = BlockChoiceVecEnv(model, task, len(batch))
            env.reset(seed, {"batch": batch})
            ep = play(env, probe, greedy=True)
            seconds["policy"] += time.perf_counter() - start
            runs["policy"].append((ep.correct, ep.compute * env.fixed_cost, ep.steps, ep.blocks))
        for name, parts in runs.items():
            correct, cost, steps, calls = (torch.cat([p[i] for p in parts]).float() for i in range(4))
            result[name][str(d)] = {"accuracy": correct.mean().item(), "compute": cost.mean().item(),
                                    "steps": steps.mean().item(), "block_calls": calls.mean().item(),
                                    "seconds": round(seconds[name], 4)}
    result["summary"] = _summary(result, difficulties)
    return result


def _summary(result: dict, difficulties: list[int]) -> dict:
    """Means over the difficulties, the compute ratio, and steps on the easiest vs the hardest."""
    mean = {name: {k: sum(result[name][str(d)][k] for d in difficulties) / len(difficulties)
                   for k in ("accuracy", "compute", "steps")} for name in ("fixed", "policy")}
    easy, hard = str(min(difficulties)), str(max(difficulties))
    seconds = {name: sum(result[name][str(d)]["seconds"] for d in difficulties) for name in ("fixed", "policy")}
    return {"accuracy_fixed": mean["fixed"]["accuracy"], "accuracy_policy": mean["policy"]["accuracy"],
            "seconds_fixed": seconds["fixed"], "seconds_policy": seconds["policy"],
            "wall_clock_ratio": seconds["policy"] / seconds["fixed"],
            "compute_fixed": mean["fixed"]["compute"], "compute_policy": mean["policy"]["compute"],
            "compute_ratio": mean["policy"]["compute"] / mean["fixed"]["compute"],
            "steps_policy_easiest": result["policy"][easy]["steps"], "steps_policy_hardest": result["policy"][hard]["steps"]}
