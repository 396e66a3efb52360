"""Claim: one training update through the framework costs at most 1.15x the same network as a plain loop;
with `--compile` (train.compile: true) at most 0.9x.

The plain loop is the default recipe's network (embedding, aligned read, conv process layer, token
output) written directly in PyTorch, with the framework model's weights copied in. Both run the same
progressive-TBPTT plan on the same batches; the losses are checked equal first, then updates are timed
interleaved (framework, plain, framework, ...) in one process. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def plain_step(m, h, x, with_logits: bool = True):
    """One read -> think -> answer step of the default recipe, no framework objects (without the answer
    where nothing reads it: the framework's training windows without gradients skip it too)."""
    read, think, answer = m.blocks["read"], m.blocks["think"], m.blocks["answer"]
    h = h + read.mix(torch.cat([read.norm(h), x], -1))
    for mixer, mn, mlp, fn in zip(think.mixers, think.mixer_norms, think.mlps, think.mlp_norms):
        h = h + mixer.conv(mn(h).transpose(1, 2)).transpose(1, 2)
        h = h + mlp(fn(h))
    h = think.out_norm(h)
    return h, answer.head(answer.norm(h)) if with_logits else None


def plain_update(m, opt, batch, plan, latent):
    ids, target = batch.inputs["text"], batch.target
    x = m.encoders["text"].embed(ids)
    h = latent
    n_free, k = plan
    with torch.no_grad():
        for _ in range(n_free):
            h, _ = plain_step(m, h, x, with_logits=False)
    h = h.detach()
    x = m.encoders["text"].embed(ids)
    loss = 0.0
    for _ in range(k):
        h, logits = plain_step(m, h, x)
        loss = loss + F.cross_entropy(logits.flatten(0, 1), target.flatten()) / k
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--updates", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--compile", action="store_true", help="the framework side with train.compile: true")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="the framework side's train.precision")
    args = ap.parse_args()
    n = 10 if args.quick else args.updates
    torch.set_num_threads(args.threads)

    from th1nker.recipe import load_recipe
    from th1nker.tasks import make_task
    from th1nker.plans import PLANS
    from th1nker.train import speed
    from th1nker.train.loop import Trainer, TorchRng

    sets = ["train.ema=null", "train.optimizer.warmup=0", "tracking.enabled=false"]
    recipe = load_recipe(ROOT / "recipes" / "multistep.yaml", sets)
    fast = [f"train.compile={str(args.compile).lower()}", f"train.precision={args.precision}"]
    task = make_task(recipe.task, recipe.seed)
    framework = Trainer(load_recipe(ROOT / "recipes" / "multistep.yaml", sets + fast), task)
    plain = Trainer(recipe, task)  # a second copy of the weights and optimiser for the plain (eager fp32) loop
    plain.model.load_state_dict(framework.model.state_dict())
    plain_opt = torch.optim.AdamW(plain.model.parameters(), lr=recipe.train.optimizer.lr)
    framework.optimizer = torch.optim.AdamW(framework.model.parameters(), lr=recipe.train.optimizer.lr)
    framework.scheduler = torch.optim.lr_scheduler.LambdaLR(framework.optimizer, lambda u: 1.0)

    def framework_update():
        return framework.train_update()["loss"]

    def plain_once():
        # replay exactly the draws the framework makes: plan, batch, then the initial latent
        g = plain.generator
        plan = PLANS["progressive"](recipe.train.tbptt, recipe.schedule.steps, TorchRng(g))
        n_free, k = (plan[0].steps, plan[1].steps) if len(plan) == 2 else (0, plan[0].steps)
        batch = task.train_batch(recipe.train.batch_size, g)
        latent = torch.randn(len(batch), batch.target.shape[1], recipe.model.dim, generator=g)
        return plain_update(plain.model, plain_opt, batch, (n_free, k), latent)

    # equal work: both sides draw the same batches, plans and latents, so the losses must agree
    # (to rounding with compile or bf16); these first updates also compile
    warm_start = time.perf_counter()
    same = [abs(framework_update() - plain_once()) for _ in range(3)]
    warm_s = time.perf_counter() - warm_start
    times = {"framework": [], "plain": []}
    for _ in range(n):
        for name, fn in (("framework", framework_update), ("plain", plain_once)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    fw, pl = statistics.median(times["framework"]), statistics.median(times["plain"])
    print(json.dumps({
        "claim": "framework update <= 0.9x a plain eager PyTorch loop with compile, <= 1.15x without",
        "framework_settings": {"compile": args.compile, "precision": args.precision},
        "first_3_updates_s_including_compile": round(warm_s, 1),
        "updates_timed": n, "median_s_framework": round(fw, 5), "median_s_plain": round(pl, 5),
        "ratio": round(fw / pl, 3), "total_s_framework": round(sum(times["framework"]), 3),
        "total_s_plain": round(sum(times["plain"]), 3),
        "ratio_of_totals": round(sum(times["framework"]) / sum(times["plain"]), 3),
        "max_abs_loss_difference_first_updates": max(same),
        "compiled_graphs": speed.compiled_graphs() if args.compile else 0,
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
