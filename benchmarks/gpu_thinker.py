"""Claim (GPU only): the Thinker at width >= 768 trains in bf16 at >= 40% model FLOPs utilisation.

Needs a CUDA device; not a test. Times forward + backward + AdamW (fused) of `ThinkerLM` under bf16
autocast, optionally with its layers compiled, and reports tokens/s, MFU (model FLOPs: 6 x parameters
in matrix multiplications per token + 12 x layers x seq x width for attention, over the device's dense
bf16 peak, from the table below or --peak-tflops) and peak memory. Then the default recipe scaled up
(model.dim, batch) trained by the Trainer with train.precision=bf16: seconds per update and peak memory.
Prints one JSON object.

    python benchmarks/gpu_thinker.py [--dim 1024 --layers 12 --heads 16 --seq 1024 --batch 16] [--compile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from th1nker.omni.thinker import ThinkerConfig, ThinkerLM

ROOT = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def peak_tflops(name: str, given: float | None) -> float | None:
    return given or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def time_steps(step, n: int) -> list[float]:
    times = []
    for _ in range(n):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def thinker(args, device) -> dict:
    config = ThinkerConfig(vocab=args.vocab, dim=args.dim, layers=args.layers, heads=args.heads,
                           hidden=4 * args.dim, context=args.seq + 1)
    model = ThinkerLM(config).to(device).train()
    if args.compile:
        for block in model.blocks:
            block.compile()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq + 1), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = model.loss(ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    time_steps(step, 3)  # warm-up (and compile)
    torch.cuda.reset_peak_memory_stats()
    seconds = statistics.median(time_steps(step, args.steps))
    matmul_params = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and not n.startswith("embed"))
    if config.tie_embeddings:
        matmul_params += model.head.weight.numel()  # the tied head is a matmul too
    flops_per_token = 6 * matmul_params + 12 * config.layers * args.seq * config.dim
    tokens = args.batch * args.seq
    peak = peak_tflops(torch.cuda.get_device_name(), args.peak_tflops)
    achieved = flops_per_token * tokens / seconds / 1e12
    return {"config": config.model_dump(), "batch": args.batch, "seq": args.seq, "compile": args.compile,
            "tokens_per_s": round(tokens / seconds), "achieved_tflops": round(achieved, 1),
            "peak_bf16_tflops": peak, "mfu": round(achieved / peak, 3) if peak else None,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def scaled_recipe(args) -> dict:
    from th1nker.recipe import load_recipe
    from th1nker.tasks import make_task
    from th1nker.train.loop import Trainer

    sets = [f"model.dim={args.dim}", f"train.batch_size={args.recipe_batch}", "train.precision=bf16",
            f"train.compile={str(args.compile).lower()}", "train.ema=null", "tracking.enabled=false", "train.device=cuda"]
    recipe = load_recipe(ROOT / "recipes" / "multistep.yaml", sets)
    trainer = Trainer(recipe, make_task(recipe.task, recipe.seed))
    time_steps(trainer.train_update, 3)
    torch.cuda.reset_peak_memory_stats()
    seconds = statistics.median(time_steps(trainer.train_update, args.steps))
    return {"sets": sets, "s_per_update": round(seconds, 4),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--recipe-batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak, if the device is not in the table")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_thinker.py needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = True
    device = torch.device("cuda")
    print(json.dumps({"benchmark": "gpu_thinker", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "thinker": thinker(args, device), "default_recipe_scaled": scaled_recipe(args)}))


if __name__ == "__main__":
    main()
