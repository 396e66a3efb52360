from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

# The test models are tiny: a second thread gains nothing and stalls badly when the CPU is shared.
torch.set_num_threads(1)

TINY = """
name: tiny
seed: 0
task: {kind: prefix_parity, train: [4, 8], eval: [8, 12], eval_examples: 32}
model:
  dim: 16
  blocks:
    read: {kind: read_text, mode: aligned}
    think: {kind: process, mixer: conv1d, layers: 1}
    answer: {kind: output_tokens}
graph: {start: [read], edges: {read: [think], think: [think, answer], answer: [read]}}
schedule: {kind: fixed, step: [read, think, answer], steps: 4}
train:
  batch_size: 8
  max_updates: 6
  checkpoint_every: 3
  log_every: 2
  optimizer: {lr: 0.003, warmup: 2}
eval: {steps: [2, 4, 8], batch_size: 32}
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test runs in its own folder with its own MLflow store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield tmp_path


@pytest.fixture
def tiny_recipe(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path
