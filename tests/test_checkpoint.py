"""Checkpoints: a kill at any file operation of a save resumes bit-identically; sha256 catches flipped bytes."""

import json
import os
import shutil
import struct
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.recipe import validate_recipe
from th1nker.tasks import make_task
from th1nker.train import checkpoint as ckpt_io
from th1nker.train.loop import Trainer
from th1nker.train.run import resume_from, train_recipe

from conftest import TINY

runner = CliRunner()
# three saves: updates 1, 2, 3 (the third deletes the first); fit does not save update 3 a second time
SHORT = {"max_updates": 3, "checkpoint_every": 1}
WRITES = {"save_file", "write_text"}  # operations that a kill can stop halfway
OPERATIONS = [(ckpt_io, "save_file"), (Path, "write_text"), (os, "mkdir"), (os, "fsync"), (os, "rename"),
              (os, "replace"), (os, "unlink"), (shutil, "rmtree")]
SAVE_OPERATIONS = 59  # file operations of the three saves, counted by the fixture below


class Killed(BaseException):
    """The process died here, as under SIGKILL: nothing after it runs, no cleanup either."""


def _trainer() -> Trainer:
    data = yaml.safe_load(TINY)
    data["train"].update(SHORT)
    recipe = validate_recipe(data)
    return Trainer(recipe, make_task(recipe.task, recipe.seed))


def _final_tensors(run: Path) -> dict[str, torch.Tensor]:
    ckpt = run / "checkpoints" / "step_00000003"
    return {f"{f}/{k}": v for f in ("model", "ema", "trainer") for k, v in load_file(ckpt / f"{f}.safetensors").items()}


@contextmanager
def dying_at(n: int):
    """Count file operations; operation n (0 = none) is where the process dies: a write stops halfway,
    and no file operation after it happens, cleanup handlers included. Yields the operations done."""
    done, busy = [], [False]

    def wrap(name, real):
        def operation(*args, **kwargs):
            if busy[0]:  # inside another operation (the unlinks of an rmtree)
                return real(*args, **kwargs)
            done.append(name)
            if n and len(done) == n and name in WRITES:
                _half_write(name, real, *args)
            if n and len(done) >= n:
                raise Killed(f"killed at file operation {n} ({name})")
            busy[0] = True
            try:
                return real(*args, **kwargs)
            finally:
                busy[0] = False
        return operation

    with pytest.MonkeyPatch.context() as mp:
        for owner, name in OPERATIONS:
            mp.setattr(owner, name, wrap(name, getattr(owner, name)))
        yield done


def _half_write(name: str, real, *args) -> None:
    """What a write killed halfway leaves on disk."""
    if name == "write_text":
        path, text = args
        real(path, text[: len(text) // 2])
    else:
        tensors, file = args
        real(tensors, file)
        os.truncate(file, os.path.getsize(file) // 2)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The final checkpoint of an uninterrupted run."""
    run = tmp_path_factory.mktemp("straight") / "run"
    trainer = _trainer()
    with dying_at(0) as done:
        trainer.fit(run)
    assert len(done) == SAVE_OPERATIONS, f"a save now makes {len(done)} file operations: {done}"
    return _final_tensors(run)


@pytest.mark.parametrize("n", range(1, SAVE_OPERATIONS + 1))
def test_a_kill_at_any_file_operation_of_a_save_resumes_bit_identically(n, straight, tmp_path):
    run = tmp_path / "run"
    trainer = _trainer()
    with dying_at(n), pytest.raises(Killed):
        trainer.fit(run)
    latest = run / "checkpoints" / "latest"
    if latest.exists():  # `latest` always names a complete, undamaged checkpoint
        ckpt_io.verify_checkpoint(run / "checkpoints" / latest.read_text().strip())

    trainer = _trainer()
    if ckpt_io.has_checkpoint(run):  # `train --resume`; without a checkpoint, a new run in the same folder
        resume_from(trainer, run, Console(quiet=True))
    trainer.fit(run)
    resumed = _final_tensors(run)
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_00000002", "step_00000003"]


def _flip_a_byte_inside_a_tensor(file: Path) -> None:
    """Change one byte of the first tensor's data: the file still parses, one weight differs slightly."""
    data = bytearray(file.read_bytes())
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    begin, _ = next(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
    data[8 + size + begin] ^= 0xFF  # the lowest byte of a little-endian float: a finite, nearby value
    file.write_bytes(bytes(data))


def _checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step_*"))


@pytest.mark.parametrize("kind", ["model", "ema"])
def test_a_flipped_byte_in_every_checkpoint_stops_resume_and_eval(kind, tiny_recipe, tmp_path):
    run = tmp_path / "run"
    ema = [] if kind == "ema" else ["train.ema=null"]  # eval reads ema.safetensors when the run keeps an EMA
    train_recipe(tiny_recipe, ["tracking.enabled=false", *ema], run, resume=False)
    assert len(_checkpoints(run)) == 2
    for ckpt in _checkpoints(run):
        _flip_a_byte_inside_a_tensor(ckpt / f"{kind}.safetensors")
    for args in (["eval", str(tiny_recipe), "--checkpoint", str(run)],
                 ["train", str(tiny_recipe), "--out", str(run), "--resume", *(a for s in ema for a in ("--set", s))]):
        res = runner.invoke(app, args, env={"COLUMNS": "300"})
        assert res.exit_code == 2, res.output
        assert f"step_00000006/{kind}.safetensors: corrupt or truncated: its sha256 differs" in res.output, res.output
        assert "Traceback" not in res.output


@pytest.mark.parametrize("damage", ["flipped byte", "deleted folder"])
def test_resume_falls_back_to_the_newest_intact_checkpoint_and_repairs_the_latest(damage, tiny_recipe, tmp_path):
    run = tmp_path / "run"
    train_recipe(tiny_recipe, ["tracking.enabled=false"], run, resume=False)
    latest = run / "checkpoints" / "step_00000006"
    good = (latest / "model.safetensors").read_bytes()
    if damage == "flipped byte":
        _flip_a_byte_inside_a_tensor(latest / "model.safetensors")
        problem = f"{latest / 'model.safetensors'}: corrupt or truncated"
    else:
        shutil.rmtree(latest)
        problem = f"{latest}: missing or incomplete"
        res = runner.invoke(app, ["eval", str(tiny_recipe), "--checkpoint", str(run)], env={"COLUMNS": "300"})
        assert res.exit_code == 2 and "names 'step_00000006', which is missing" in res.output
        assert f"use one of the checkpoint folders beside it: {run / 'checkpoints' / 'step_00000003'}" in res.output
    res = runner.invoke(app, ["train", str(tiny_recipe), "--out", str(run), "--resume", "--set", "tracking.enabled=false"],
                        env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    said = [line for line in res.output.splitlines() if line.startswith(problem)]  # one line, naming both
    assert len(said) == 1 and said[0].endswith("; resuming from step_00000003, the newest intact checkpoint"), res.output
    assert (latest / "model.safetensors").read_bytes() == good  # update 6 trained again, bit for bit, saved in place
    ckpt_io.verify_checkpoint(latest)


def test_a_checkpoint_without_hashes_loads_unchecked(tiny_recipe, tmp_path):
    run = tmp_path / "run"
    train_recipe(tiny_recipe, ["tracking.enabled=false"], run, resume=False)
    state_file = run / "checkpoints" / "step_00000006" / "state.json"
    state = json.loads(state_file.read_text())
    del state["sha256"]  # as written before checkpoints recorded hashes
    state_file.write_text(json.dumps(state))
    _flip_a_byte_inside_a_tensor(state_file.parent / "ema.safetensors")
    res = runner.invoke(app, ["eval", str(tiny_recipe), "--checkpoint", str(run), "--json"])
    assert res.exit_code == 0, res.output


def test_saving_an_update_twice_writes_nothing(tmp_path):
    trainer, run = _trainer(), tmp_path / "run"
    first = trainer.save(run, {})
    stamp = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    with dying_at(0) as done:
        assert trainer.save(run, {}) == first
    assert "save_file" not in done and "rename" not in done
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == stamp
