"""Checkpoints: safetensors for tensors, JSON for the rest; never pickles.

A checkpoint is a folder `checkpoints/step_NNNNNNNN/` with model.safetensors, ema.safetensors (when the
recipe keeps an EMA), trainer.safetensors (optimizer moments, RNG states) and state.json (update count,
resolved recipe, optimizer groups, scheduler, MLflow run id, and the sha256 of every other file, checked
on every load). A kill at any instant leaves every `step_*` folder complete: a checkpoint is written into
`.tmp-step_*`, each file and the folder fsynced, then renamed into place; a folder it replaces is renamed
aside first and deleted only after. `checkpoints/latest` is rewritten (atomically) only then, so it always
names a complete checkpoint; `train --resume` falls back to the newest intact one when it is damaged.
Under torchrun rank 0 writes full tensors (FSDP shards gathered) and every rank's generator state, so
a checkpoint loads in one process and resumes with the same number of processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load, save_file

from th1nker.errors import CheckpointError
from th1nker.io import atomic_write_text, fsync_dir, fsync_file, sha256
from th1nker.omni.layers import fuse_qkv_keys
from th1nker.train import distributed

KEEP = 2  # checkpoints kept per run
HASHES = "sha256"  # state.json: file name -> sha256 of each file beside it
STEP = re.compile(r"step_(\d+)")
LEFTOVER = (".tmp-", ".old-", ".latest.")  # a save's temporary folders and files; the next save deletes them


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
    """Write a complete checkpoint so that a kill at any instant loses nothing; returns its folder. Saving
    an update that already has an intact checkpoint writes nothing (it only points `latest` at it).
    Under torchrun every rank calls it (to gather shards and generator states) and rank 0 writes."""
    files, opt = _gather(model, ema, optimizer, generator)
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{update:08d}"
    if not distributed.is_main():
        return final
    root.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(root)
    if not _intact(final):
        state = {"update": update, "world_size": distributed.world_size(), "recipe": recipe_dict,
                 "param_groups": opt["param_groups"],
                 "state_keys": {str(pid): list(st) for pid, st in opt["state"].items()},
                 "scheduler": scheduler.state_dict(), **extra}
        _write(final, files, state)
    _point_latest(root, final.name)
    older = [p for p in _steps(root) if _step(p) < update]
    for old in older[:max(0, len(older) - (KEEP - 1))]:  # the one just written is the KEEP-th
        _discard(old)
    return final


def _gather(model, ema, optimizer, generator: torch.Generator) -> tuple[dict[str, dict], dict]:
    """(tensors of each checkpoint file, full optimizer state), gathered on every rank."""
    files = {"model.safetensors": distributed.full_state_dict(model)}
    if ema is not None:
        files["ema.safetensors"] = distributed.full_state_dict(ema)
    files = {name: _untied({k: v.detach().contiguous().cpu() for k, v in sd.items()}) for name, sd in files.items()}
    opt = distributed.full_optimizer_state(optimizer)
    trainer = {f"opt.{pid}.{k}": v.contiguous().cpu() for pid, st in opt["state"].items() for k, v in st.items()}
    trainer["rng.torch"] = torch.get_rng_state()
    trainer.update(distributed.generator_states(generator))
    if torch.cuda.is_available():
        trainer["rng.cuda"] = torch.cuda.get_rng_state()
    files["trainer.safetensors"] = trainer
    return files, opt


def _untied(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tied weights (one tensor under two names, e.g. a head tied to its embedding) as separate copies:
    safetensors refuses shared memory; loading puts the one value back under both names."""
    seen, out = set(), {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else None
        out[k] = v.clone() if ptr is not None and ptr in seen else v
        seen.add(ptr)
    return out


def _write(final: Path, files: dict[str, dict], state: dict) -> None:
    """Write the files and state.json (with their sha256) into a temporary folder, then rename it to `final`."""
    tmp = final.with_name(f".tmp-{final.name}")
    tmp.mkdir()
    state[HASHES] = {name: _write_tensors(tmp / name, tensors) for name, tensors in files.items()}
    (tmp / "state.json").write_text(json.dumps(state, indent=2, default=str))
    fsync_file(tmp / "state.json")
    fsync_dir(tmp)
    _replace_folder(tmp, final)


def _write_tensors(file: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write a safetensors file and flush it to disk; returns its sha256."""
    save_file(tensors, file)
    fsync_file(file)
    return sha256(file)


def _replace_folder(tmp: Path, final: Path) -> None:
    """Rename `tmp` to `final`; a folder already at `final` is renamed aside first, deleted only after."""
    aside = final.with_name(f".old-{final.name}")
    if final.exists():
        os.rename(final, aside)
    os.rename(tmp, final)
    fsync_dir(final.parent)
    if aside.exists():
        shutil.rmtree(aside)


def _discard(folder: Path) -> None:
    """Delete a checkpoint: renamed aside first, so a kill never leaves part of one under its name."""
    aside = folder.with_name(f".old-{folder.name}")
    os.rename(folder, aside)
    fsync_dir(folder.parent)
    shutil.rmtree(aside)


def _remove_leftovers(root: Path) -> None:
    """Delete the temporary folders and files of saves that a kill interrupted."""
    for p in root.iterdir():
        if p.name.startswith(LEFTOVER):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def _point_latest(root: Path, name: str) -> None:
    if _latest_name(root) != name:
        atomic_write_text(root / "latest", name + "\n")


def _latest_name(root: Path) -> str | None:
    try:
        return (root / "latest").read_text().strip()
    except FileNotFoundError:
        return None


def _step(folder: Path) -> int:
    return int(STEP.fullmatch(folder.name).group(1))


def _steps(root: Path) -> list[Path]:
    """The run's checkpoint folders, oldest first."""
    return sorted((p for p in root.glob("step_*") if STEP.fullmatch(p.name) and p.is_dir()), key=_step)


def _intact(ckpt: Path) -> bool:
    try:
        verify_checkpoint(ckpt)
    except CheckpointError:
        return False
    return True


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint folder `latest` names in a run folder (None before the first save)."""
    root = Path(run_dir) / "checkpoints"
    name = _latest_name(root)
    return root / name if name else None


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run folder holds a checkpoint (intact or not) to resume from."""
    root = Path(run_dir) / "checkpoints"
    return (root / "latest").exists() or bool(root.is_dir() and _steps(root))


def verify_checkpoint(ckpt: Path) -> dict:
    """The state.json of a complete, undamaged checkpoint (each file checked against its sha256).

    Checkpoints written before hashes were recorded (no "sha256" in state.json) are checked for the
    presence of their files only, and load unchecked."""
    if not (ckpt / "state.json").is_file():
        raise CheckpointError(f"{ckpt}: missing or incomplete (no state.json)")
    state = load_state(ckpt)
    for name in state.get(HASHES) or ("model.safetensors", "trainer.safetensors"):
        _read_verified(ckpt / name, state)
    return state


def resume_point(run_dir: Path) -> tuple[Path, str | None]:
    """The checkpoint `train --resume` continues from: the one `latest` names when it is intact, else the
    newest intact one, with a line saying why (None when `latest` was used)."""
    root = Path(run_dir) / "checkpoints"
    named = _latest_name(root)
    problems = [] if named else [f"{root / 'latest'} is missing"]
    candidates = ([root / named] if named else []) + [p for p in reversed(_steps(root)) if p.name != named]
    for ckpt in candidates:
        try:
            verify_checkpoint(ckpt)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        return ckpt, (f"{problems[0]}; resuming from {ckpt.name}, the newest intact checkpoint" if problems else None)
    raise CheckpointError(f"{root}: no intact checkpoint to resume from:\n  " + "\n  ".join(problems) +
                          "\nstart a new run: drop --resume, or pick another --out")


def find_checkpoint(path: Path) -> Path:
    """A checkpoint folder from a run folder, its checkpoints/ folder, or the checkpoint itself."""
    path = Path(path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / "state.json").exists():
            return candidate
        if (candidate / "latest").exists():
            name = (candidate / "latest").read_text().strip()
            if not (candidate / name / "state.json").exists():
                others = ", ".join(str(p) for p in _steps(candidate))
                raise CheckpointError(f"{candidate / 'latest'} names '{name}', which is missing; " + (
                    f"use one of the checkpoint folders beside it: {others}" if others else "train the run again"))
            return candidate / name
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run folder; pass the --out folder of a train run")
    raise CheckpointError(f"{path}: no checkpoint here (no state.json, no checkpoints/latest); "
                          f"pass a run folder or a checkpoints/step_* folder")


def _read_verified(file: Path, state: dict) -> bytes:
    """A checkpoint file's bytes, checked against the sha256 state.json records for it (when it does)."""
    if not file.exists():
        raise CheckpointError(f"{file}: missing from the checkpoint; it was not written completely, use another")
    data = file.read_bytes()
    expected = state.get(HASHES, {}).get(file.name)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(f"{file}: corrupt or truncated: its sha256 differs from the one in state.json; "
                              "use an earlier checkpoint or train again")
    return data


def _load_tensors(file: Path, state: dict) -> dict[str, torch.Tensor]:
    data = _read_verified(file, state)
    try:
        return load(data)
    except Exception as e:  # safetensors reports corruption with several exception types
        raise CheckpointError(f"{file}: corrupt or truncated ({e}); delete this checkpoint and use an earlier one") from None


def load_state(ckpt: Path) -> dict:
    """A checkpoint's state.json."""
    try:
        state = json.loads((ckpt / "state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{ckpt / 'state.json'}: unreadable ({e}); the checkpoint is damaged") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt / 'state.json'}: not a checkpoint's state (a JSON object); the checkpoint is damaged")
    return state


def recipe_mismatch(saved: dict, current: dict) -> list[str]:
    """Fields of the model section that differ between a checkpoint's recipe and the current one."""
    a, b = _flat(saved.get("model", {}), "model."), _flat(current.get("model", {}), "model.")
    return [f"{k}: checkpoint has {a.get(k)!r}, recipe has {b.get(k)!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and not k.endswith(".cost")]


def load_weights(module: torch.nn.Module, file: Path, state: dict, recipe_dict: dict) -> None:
    """Load safetensors weights, naming the recipe fields that differ when they do not fit."""
    tensors = _load_tensors(file, state)
    own = module.state_dict()
    fuse_qkv_keys(tensors, own)
    bad = sorted(set(own) ^ set(tensors)) + sorted(
        k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if bad:
        fields = recipe_mismatch(state.get("recipe", {}), recipe_dict)
        detail = "\n  ".join(fields) if fields else "tensors differ: " + ", ".join(bad[:8])
        raise CheckpointError(f"{file}: the checkpoint does not fit this recipe:\n  {detail}\n"
                              f"use the recipe the checkpoint was trained with ({file.parent / 'state.json'})")
    distributed.load_full_state_dict(module, tensors)


def load_model_weights(model: torch.nn.Module, path: Path, recipe_dict: dict, use_ema: bool = True) -> torch.nn.Module:
    """`model` with the weights of the checkpoint at `path` (a run, checkpoints/ or step folder): its EMA
    weights when it kept them and `use_ema`. Returns the module that holds them (the EMA's inner model)."""
    ckpt = find_checkpoint(path)
    state = load_state(ckpt)
    ema = ckpt / "ema.safetensors"
    if use_ema and ema.exists():
        from torch.optim.swa_utils import AveragedModel

        holder = AveragedModel(model, use_buffers=True)
        load_weights(holder, ema, state, recipe_dict)
        return holder.module
    load_weights(model, ckpt / "model.safetensors", state, recipe_dict)
    return model


def load_trainer_state(ckpt: Path, optimizer, scheduler, generator: torch.Generator, state: dict) -> None:
    """Restore optimizer, scheduler and RNG states for an exact resume (with as many processes as wrote it)."""
    saved, world = state.get("world_size", 1), distributed.world_size()
    if saved != world:
        raise CheckpointError(f"{ckpt}: written by {saved} process(es) but resumed by {world}; resume with "
                              f"th1nker train --nproc {saved} (torchrun --nproc-per-node {saved}) to continue exactly")
    tensors = _load_tensors(ckpt / "trainer.safetensors", state)
    opt_state = {int(pid): {k: tensors[f"opt.{pid}.{k}"] for k in keys} for pid, keys in state["state_keys"].items()}
    opt_state = distributed.local_optimizer_state(optimizer, opt_state)
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    except ValueError as e:  # e.g. written before attention's q and kv were fused into one parameter
        raise CheckpointError(f"{ckpt}: its optimizer state does not fit this model's parameters ({e}); an exact "
                              "resume needs the code version that wrote it (its weights still load for eval)") from None
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors[distributed.generator_key()])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
