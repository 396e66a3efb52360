"""Claims: the Thinker trains >= 1.5x μOmni's ThinkerLM tokens/s with equal loss curves, and cached
generation of 256 tokens runs >= 2x μOmni's cached and >= 10x our uncached path, with tokens identical.

μOmni's own `omni/thinker.py` is imported from the checkout given on the command line (never copied
here); its weights are copied into ours (its rotate-half rotary becomes our interleaved one by permuting
the query and key rows of each head), and the logits are checked equal first. Variants run in
alternating rounds so that a noisy machine affects them alike; each round's timings give ratios, and the
median of the per-round ratios is reported. Prints one JSON object.

    python benchmarks/muomni_side_by_side.py --muomni /path/to/micro-Omni [--quick] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from th1nker.omni.thinker import ThinkerConfig, ThinkerLM

IGNORED_IMPORTS = ("torchaudio", "torchvision", "torchvision.transforms", "PIL", "PIL.Image")


def import_muomni(root: Path):
    """μOmni's ThinkerLM class; its utils import media libraries the Thinker never uses, stubbed if absent."""
    for name in IGNORED_IMPORTS:
        try:
            __import__(name)
        except ImportError:
            stub = sys.modules[name] = types.ModuleType(name)
            stub.transforms = stub.Image = stub
    sys.path.insert(0, str(root))
    from omni.thinker import ThinkerLM as MuThinker  # noqa: E402  (μOmni's code, from its checkout)

    return MuThinker


def copy_weights(mu, ours: ThinkerLM) -> None:
    """μOmni's parameters into ours; rotate-half pairs (i, i + d/2) become interleaved pairs (2i, 2i + 1)."""
    dim, heads = ours.config.dim, ours.config.heads
    hd = dim // heads
    perm = torch.stack([torch.arange(hd // 2), torch.arange(hd // 2) + hd // 2], dim=1).flatten()
    head_perm = (torch.arange(heads)[:, None] * hd + perm[None]).flatten()
    with torch.no_grad():
        ours.embed.weight.copy_(mu.tok_emb.weight)
        ours.head.weight.copy_(mu.lm_head.weight)
        ours.norm.weight.copy_(mu.norm.weight)
        for theirs, block in zip(mu.blocks, ours.blocks):
            q, k, v = theirs.attn.qkv.weight.chunk(3, dim=0)
            block.attn.qkv.weight.copy_(torch.cat([q[head_perm], k[head_perm], v]))
            block.attn.out.weight.copy_(theirs.attn.o.weight)
            block.attn_norm.weight.copy_(theirs.norm1.weight)
            block.mlp_norm.weight.copy_(theirs.norm2.weight)
            block.mlp.gate_up.weight.copy_(torch.cat([theirs.mlp.gate_proj.weight, theirs.mlp.up_proj.weight]))
            block.mlp.down.weight.copy_(theirs.mlp.down_proj.weight)
    for m in ours.modules():
        if hasattr(m, "eps"):
            m.eps = 1e-5  # μOmni's RMSNorm epsilon


def train_steps(loss_fn, opt, batches, context) -> tuple[list[float], list[float]]:
    """Forward, backward and an optimizer step per batch: (seconds, losses)."""
    times, losses = [], []
    for ids in batches:
        start = time.perf_counter()
        with context():
            loss = loss_fn(ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        times.append(time.perf_counter() - start)
    return times, losses


def mu_loss(mu):
    def loss(ids):
        logits = mu(ids[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
    return loss


def mu_generate(mu, prompt: torch.Tensor, new: int) -> torch.Tensor:
    """μOmni's own cached greedy decoding (its inference loop: prefill, then one token at a time)."""
    mu.enable_kv_cache(True)
    mu.reset_kv_cache()
    out, step = prompt, prompt
    with torch.no_grad():
        for _ in range(new):
            token = mu(step)[:, -1].argmax(-1, keepdim=True)
            out, step = torch.cat([out, token], dim=1), token
    mu.enable_kv_cache(False)
    return out


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--muomni", type=Path, required=True, help="a checkout of μOmni (holds omni/thinker.py)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per round and variant")
    ap.add_argument("--new", type=int, default=256, help="generated tokens")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16", help="our training precision")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile our layers for training (train.compile) and generate through the "
                         "compiled static-cache decode step (generate --compile)")
    ap.add_argument("--quick", action="store_true", help="a tiny run to check the script")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dict(vocab=5000, dim=256, layers=4, heads=4, hidden=1024)
    if args.quick:
        cfg = dict(vocab=500, dim=64, layers=2, heads=4, hidden=128)
        args.batch, args.seq, args.rounds, args.steps, args.new = 2, 32, 1, 2, 16
    context = max(1024, args.seq + 1, 16 + args.new)

    MuThinker = import_muomni(args.muomni)
    torch.manual_seed(0)
    mu = MuThinker(cfg["vocab"], n_layers=cfg["layers"], d=cfg["dim"], heads=cfg["heads"], ff=cfg["hidden"],
                   dropout=0.0, ctx=context).train()
    ours = ThinkerLM(ThinkerConfig(**cfg, context=context, tie_embeddings=False)).train()
    copy_weights(mu, ours)
    ids = torch.randint(0, cfg["vocab"], (args.batch, args.seq + 1))
    with torch.no_grad():
        logit_diff = (mu(ids[:, :-1]) - ours(ids[:, :-1])[0]).abs().max().item()

    # Generation first (weights as copied): ours cached, ours uncached, μOmni cached.
    prompt = torch.randint(0, cfg["vocab"], (1, 16))
    ours.eval(), mu.eval()
    gen = {"ours_cached": lambda: ours.generate(prompt, args.new),
           "ours_uncached": lambda: ours.generate(prompt, args.new, use_cache=False),
           "muomni_cached": lambda: mu_generate(mu, prompt, args.new)}
    if args.compile:  # the static cache and one compiled decode step (what `generate --compile` runs)
        gen["ours_compiled"] = lambda: ours.generate(prompt, args.new, compile=True)
    tokens, gen_times = {}, {k: [] for k in gen}
    for name, fn in gen.items():  # warm-up
        tokens[name] = fn()
    for _ in range(max(1, args.rounds // 2)):
        for name, fn in gen.items():
            tokens[name], t = timed(fn)
            gen_times[name].append(t)
    ours.train(), mu.train()

    # Training: each side its own AdamW from the same weights, on the same batches.
    if args.compile:
        for block in ours.blocks:
            block.compile(dynamic=False)
    ours_ctx = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.precision == "bf16"
                else contextlib.nullcontext)
    sides = {"ours": (lambda x: ours.loss(x)[0], torch.optim.AdamW(ours.parameters(), lr=1e-3), ours_ctx),
             "muomni": (mu_loss(mu), torch.optim.AdamW(mu.parameters(), lr=1e-3), contextlib.nullcontext)}
    g = torch.Generator().manual_seed(1)
    warm = [torch.randint(0, cfg["vocab"], (args.batch, args.seq + 1), generator=g) for _ in range(2)]
    for loss_fn, opt, ctx in sides.values():
        train_steps(loss_fn, opt, warm, ctx)
    times = {k: [] for k in sides}
    curves = {k: [] for k in sides}
    for _ in range(args.rounds):
        batches = [torch.randint(0, cfg["vocab"], (args.batch, args.seq + 1), generator=g) for _ in range(args.steps)]
        for name, (loss_fn, opt, ctx) in sides.items():
            t, losses = train_steps(loss_fn, opt, batches, ctx)
            times[name].append(t)
            curves[name] += losses
    tokens_per_step = args.batch * args.seq
    per_round = [statistics.median(m) / statistics.median(o) for o, m in zip(times["ours"], times["muomni"])]
    gen_rate = {k: args.new / statistics.median(v) for k, v in gen_times.items()}
    print(json.dumps({
        "benchmark": "muomni_side_by_side",
        "config": cfg, "batch": args.batch, "seq": args.seq, "rounds": args.rounds, "steps_per_round": args.steps,
        "ours_settings": {"precision": args.precision, "compile": args.compile},
        "muomni_settings": "fp32, eager, SDPA (use_flash), as shipped",
        "max_abs_logit_diff_fp32": logit_diff,
        "train_tokens_per_s_ours": round(tokens_per_step / statistics.median(sum(times["ours"], [])), 1),
        "train_tokens_per_s_muomni": round(tokens_per_step / statistics.median(sum(times["muomni"], [])), 1),
        "train_speedup_median_of_rounds": round(statistics.median(per_round), 3),
        "train_speedup_per_round": [round(r, 3) for r in per_round],
        "loss_first_last_ours": [round(curves["ours"][0], 4), round(curves["ours"][-1], 4)],
        "loss_first_last_muomni": [round(curves["muomni"][0], 4), round(curves["muomni"][-1], 4)],
        "loss_curve_max_abs_diff": round(max(abs(a - b) for a, b in zip(curves["ours"], curves["muomni"])), 4),
        "generate_new_tokens": args.new,
        **{f"generate_tokens_per_s_{k}": round(v, 1) for k, v in gen_rate.items()},
        "cached_over_muomni_cached": round(gen_rate["ours_cached"] / gen_rate["muomni_cached"], 2),
        "cached_over_uncached": round(gen_rate["ours_cached"] / gen_rate["ours_uncached"], 2),
        "cached_tokens_equal_uncached": bool(torch.equal(tokens["ours_cached"], tokens["ours_uncached"])),
        **({"compiled_over_muomni_cached": round(gen_rate["ours_compiled"] / gen_rate["muomni_cached"], 2),
            "compiled_over_uncached": round(gen_rate["ours_compiled"] / gen_rate["ours_uncached"], 2),
            "compiled_tokens_equal_uncached": bool(torch.equal(tokens["ours_compiled"], tokens["ours_uncached"]))}
           if args.compile else {}),
        "muomni_cached_tokens_equal_ours": bool(torch.equal(tokens["muomni_cached"], tokens["ours_uncached"])),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
    }))


if __name__ == "__main__":
    main()
