"""Checkpoints: safetensors for tensors, JSON for the rest; never pickles.

A checkpoint is a folder `checkpoints/step_NNNNNNNN/` with model.safetensors, ema.safetensors (when the
recipe keeps an EMA), trainer.safetensors (optimizer moments, RNG states) and state.json (update count,
resolved recipe, optimizer groups, scheduler, MLflow run id). It is written into a temporary folder
and renamed into place, then `checkpoints/latest` names it: a crash never leaves a half checkpoint.
Under torchrun rank 0 writes full tensors (FSDP shards gathered) and every rank's generator state, so
a checkpoint loads in one process and resumes with the same number of processes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from th1nker.errors import CheckpointError
from th1nker.io import atomic_write_text
from th1nker.train import distributed

KEEP = 2  # checkpoints kept per run


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def save_checkpoint(run_dir: Path, update: int, model, ema, optimizer, scheduler, generator: torch.Generator,
                    recipe_dict: dict, extra: dict) -> Path:
    """Write a complete checkpoint atomically; returns its folder. Under torchrun every rank calls it
    (to gather shards and generator states) and rank 0 writes."""
    weights = {"model": distributed.full_state_dict(model)}
    if ema is not None:
        weights["ema"] = distributed.full_state_dict(ema)
    opt = distributed.full_optimizer_state(optimizer)
    generators = distributed.generator_states(generator)
    root = Path(run_dir) / "checkpoints"
    name = f"step_{update:08d}"
    if not distributed.is_main():
        return root / name
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for kind, sd in weights.items():
        save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, tmp / f"{kind}.safetensors")
    tensors = {f"opt.{pid}.{k}": v.contiguous().cpu() for pid, st in opt["state"].items() for k, v in st.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    tensors.update(generators)
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, tmp / "trainer.safetensors")
    state = {"update": update, "world_size": distributed.world_size(), "recipe": recipe_dict,
             "param_groups": opt["param_groups"],
             "state_keys": {str(pid): list(st) for pid, st in opt["state"].items()},
             "scheduler": scheduler.state_dict(), **extra}
    (tmp / "state.json").write_text(json.dumps(state, indent=2, default=str))
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    atomic_write_text(root / "latest", name + "\n")
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: Path) -> Path:
    """A checkpoint folder from a run folder, its checkpoints/ folder, or the checkpoint itself."""
    path = Path(path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / "state.json").exists():
            return candidate
        if (candidate / "latest").exists():
            name = (candidate / "latest").read_text().strip()
            if not (candidate / name / "state.json").exists():
                raise CheckpointError(f"{candidate / 'latest'} names '{name}', which is missing; "
                                      f"point --checkpoint at one of {sorted(p.name for p in candidate.glob('step_*'))}")
            return candidate / name
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run folder; pass the --out folder of a train run")
    raise CheckpointError(f"{path}: no checkpoint here (no state.json, no checkpoints/latest); "
                          f"pass a run folder or a checkpoints/step_* folder")


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.exists():
        raise CheckpointError(f"{file}: missing from the checkpoint; it was not written completely, use another")
    try:
        return load_file(file)
    except Exception as e:  # safetensors reports corruption with several exception types
        raise CheckpointError(f"{file}: corrupt or truncated ({e}); delete this checkpoint and use an earlier one") from None


def load_state(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{ckpt / 'state.json'}: unreadable ({e}); the checkpoint is damaged") from None


def recipe_mismatch(saved: dict, current: dict) -> list[str]:
    """Fields of the model section that differ between a checkpoint's recipe and the current one."""
    a, b = _flat(saved.get("model", {}), "model."), _flat(current.get("model", {}), "model.")
    return [f"{k}: checkpoint has {a.get(k)!r}, recipe has {b.get(k)!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and not k.endswith(".cost")]


def load_weights(module: torch.nn.Module, file: Path, state: dict, recipe_dict: dict) -> None:
    """Load safetensors weights, naming the recipe fields that differ when they do not fit."""
    tensors = _load_tensors(file)
    own = module.state_dict()
    bad = sorted(set(own) ^ set(tensors)) + sorted(
        k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if bad:
        fields = recipe_mismatch(state.get("recipe", {}), recipe_dict)
        detail = "\n  ".join(fields) if fields else "tensors differ: " + ", ".join(bad[:8])
        raise CheckpointError(f"{file}: the checkpoint does not fit this recipe:\n  {detail}\n"
                              f"use the recipe the checkpoint was trained with ({file.parent / 'state.json'})")
    distributed.load_full_state_dict(module, tensors)


def load_trainer_state(ckpt: Path, optimizer, scheduler, generator: torch.Generator, state: dict) -> None:
    """Restore optimizer, scheduler and RNG states for an exact resume (with as many processes as wrote it)."""
    saved, world = state.get("world_size", 1), distributed.world_size()
    if saved != world:
        raise CheckpointError(f"{ckpt}: written by {saved} process(es) but resumed by {world}; resume with "
                              f"th1nker train --nproc {saved} (torchrun --nproc-per-node {saved}) to continue exactly")
    tensors = _load_tensors(ckpt / "trainer.safetensors")
    opt_state = {int(pid): {k: tensors[f"opt.{pid}.{k}"] for k in keys} for pid, keys in state["state_keys"].items()}
    opt_state = distributed.local_optimizer_state(optimizer, opt_state)
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors[distributed.generator_key()])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
