"""`th1nker memory`: build (killed mid-write, then continued), query, stats, user errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.memory import LongTermMemory
from th1nker.memory.build import build_store
from th1nker.recipe import TaskConfig
from th1nker.tasks import make_task

from conftest import RECIPES

runner = CliRunner()
RECIPE = RECIPES / "longterm.yaml"
SMALL = ["model.dim=16", "model.blocks.recall.key_dim=8"]


def _corpus(path, blocks: int):
    task = make_task(TaskConfig(kind="kv_facts"))
    keys, values, _ = task.pool(blocks, torch.Generator().manual_seed(0))
    path.write_text(task.corpus_text(keys, values))
    return path, keys


def _rows(store: LongTermMemory, name: str, n: int | None = None) -> torch.Tensor:
    return store.read(name, torch.arange(n if n is not None else len(store)))


def test_a_killed_build_leaves_every_completed_shard_and_continues(tmp_path):
    corpus, _ = _corpus(tmp_path / "corpus.txt", 600)
    straight = build_store(RECIPE, corpus, tmp_path / "straight", overrides=SMALL, shard_rows=600)

    victim = tmp_path / "killed"
    cmd = [sys.executable, "-m", "th1nker", "memory", "build", str(RECIPE), "--corpus", str(corpus),
           "--out", str(victim), "--shard-rows", "2", *(a for s in SMALL for a in ("--set", s))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest, deadline = victim / "manifest.json", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if len(json.loads(manifest.read_text())["shards"]) >= 3:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"

    store = LongTermMemory(victim)  # opens: every listed shard verifies
    n = len(store)
    assert 6 <= n < 600 and n == 2 * len(store.shards)
    assert torch.allclose(_rows(store, "values"), _rows(straight, "values", n), atol=1e-5)

    resumed = build_store(RECIPE, corpus, victim, overrides=SMALL, shard_rows=300)  # any shard size continues it
    assert len(resumed) == 600 and resumed.shards[:len(store.shards)] == store.shards  # append-only
    assert torch.allclose(_rows(resumed, "keys"), _rows(straight, "keys"), atol=1e-5)
    assert torch.allclose(_rows(resumed, "values"), _rows(straight, "values"), atol=1e-5)


@pytest.fixture
def built(tmp_path):
    corpus, keys = _corpus(tmp_path / "corpus.txt", 40)
    out = tmp_path / "mem"
    res = runner.invoke(app, ["memory", "build", str(RECIPE), "--corpus", str(corpus), "--out", str(out),
                              "--shard-rows", "16", *(a for s in SMALL for a in ("--set", s))])
    assert res.exit_code == 0, res.output
    return out, corpus, keys


def test_stats_and_queries(built):
    out, _, keys = built
    res = runner.invoke(app, ["memory", "stats", str(out), "--json"])
    info = json.loads(res.stdout)
    assert res.exit_code == 0 and info["rows"] == 40 and info["shards"] == 3 and info["value_dim"] == 4 * 16
    assert info["meta"]["block"] == "recall" and info["meta"]["blocks"] == 40
    res = runner.invoke(app, ["memory", "query", str(out), "--key-index", "7", "--k", "3"])
    assert res.exit_code == 0 and "rows nearest to row 7" in res.output
    question = "".join("abcdefghijklmnop"[s] for s in keys[0].tolist())
    res = runner.invoke(app, ["memory", "query", str(out), "--text", question])
    assert res.exit_code == 0, res.output
    assert "step 1: read rows [" in res.output and "answer:" in res.output and "hit_rate" in res.output


def test_user_errors_exit_2(built, tmp_path):
    out, corpus, _ = built
    shard = out / "shard_000001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-3] + b"xyz")
    res = runner.invoke(app, ["memory", "stats", str(out)])
    assert res.exit_code == 2 and "shard_000001.safetensors (checksum mismatch)" in res.output
    res = runner.invoke(app, ["memory", "build", str(RECIPE), "--corpus", str(corpus), "--out", str(tmp_path / "m2")])
    assert res.exit_code == 0
    res = runner.invoke(app, ["memory", "build", str(RECIPE), "--corpus", str(corpus), "--out", str(tmp_path / "m2"),
                              "--set", "model.blocks.recall.key_dim=16"])
    assert res.exit_code == 2 and "another recipe (or --set)" in res.output
    res = runner.invoke(app, ["memory", "build", str(RECIPES / "memory.yaml"), "--corpus", str(corpus),
                              "--out", str(tmp_path / "m3")])
    assert res.exit_code == 2 and "no read_longterm block" in res.output
    res = runner.invoke(app, ["memory", "query", str(tmp_path / "nowhere"), "--key-index", "0"])
    assert res.exit_code == 2 and "manifest.json missing" in res.output
