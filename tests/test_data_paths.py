"""Paths read from data files stay inside the data's folder (unless TH1NKER_ALLOW_OUTSIDE_PATHS=1);
a long-term memory refuses a query once its recipe has changed."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.errors import DataError
from th1nker.memory import LongTermMemory
from th1nker.omni.speech_data import SYNTHETIC_CODEC, SpeechFolder
from th1nker.recipe import TaskConfig
from th1nker.tasks import make_task

from conftest import RECIPES

runner = CliRunner()
FIX = "move the file there, or set TH1NKER_ALLOW_OUTSIDE_PATHS=1 to allow paths outside it"


@pytest.fixture
def outside(tmp_path):
    """A data folder, and a png and a wav beside it (outside it); a symlink inside the folder leads to the png."""
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "secret.png")
    Image.new("RGB", (8, 8)).save(data / "a.png")
    sf.write(tmp_path / "secret.wav", np.zeros(1600, dtype="float32"), 16000)
    sf.write(data / "a.wav", np.zeros(1600, dtype="float32"), 16000)
    (data / "link.png").symlink_to(tmp_path / "secret.png")
    return data


def _media_qa(data, image: str):
    rows = [{"image": "a.png", "question": "q?", "answer": "a"}, {"image": image, "question": "q?", "answer": "b"}]
    (data / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return make_task(TaskConfig(kind="media_qa", path=str(data / "qa.jsonl"), train=(0, 0), eval=[0]), seed=0)


@pytest.mark.parametrize("image", ["../secret.png", "{tmp}/secret.png", "link.png"], ids=["dotdot", "absolute", "symlink"])
def test_a_media_list_may_name_only_files_in_its_folder(image, outside, monkeypatch):
    image = image.format(tmp=outside.parent)
    with pytest.raises(DataError) as e:
        _media_qa(outside, image)
    assert str(e.value).startswith(f"{outside / 'qa.jsonl'}:2: {image!r} leads outside {outside} "
                                   f"(to {outside.parent / 'secret.png'})") and str(e.value).endswith(FIX)
    monkeypatch.setenv("TH1NKER_ALLOW_OUTSIDE_PATHS", "1")
    assert len(_media_qa(outside, image).examples) == 2


def test_a_speech_folder_may_name_only_wavs_in_it(outside):
    shutil.copy(SYNTHETIC_CODEC, outside / "codec.safetensors")
    rows = [{"text": "a", "wav": "a.wav", "split": 0}, {"text": "b", "wav": "../secret.wav", "split": 1}]
    (outside / "utterances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=f"utterances.jsonl:2: '../secret.wav' leads outside {outside}") as e:
        SpeechFolder(outside)
    assert str(e.value).endswith(FIX)


def test_a_memory_manifest_may_name_only_shards_in_its_folder(tmp_path):
    store = LongTermMemory.create(tmp_path / "mem", key_dim=4, value_dim=2)
    store.append(torch.ones(3, 4), torch.ones(3, 2))
    manifest = json.loads((store.path / "manifest.json").read_text())
    shutil.move(store.path / manifest["shards"][0]["file"], tmp_path / "elsewhere.safetensors")
    manifest["shards"][0]["file"] = "../elsewhere.safetensors"  # its sha256 still matches
    (store.path / "manifest.json").write_text(json.dumps(manifest))
    res = runner.invoke(app, ["memory", "stats", str(store.path)], env={"COLUMNS": "300"})
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())
    assert f"{store.path / 'manifest.json'}: shards[0].file: '../elsewhere.safetensors' leads outside" in said
    assert said.endswith(FIX)


def test_a_memory_query_refuses_a_recipe_changed_since_the_build(tmp_path):
    recipe = tmp_path / "longterm.yaml"
    shutil.copy(RECIPES / "longterm.yaml", recipe)
    task = make_task(TaskConfig(kind="kv_facts"))
    keys, values, _ = task.pool(8, torch.Generator().manual_seed(0))
    (tmp_path / "corpus.txt").write_text(task.corpus_text(keys, values))
    small = ["--set", "model.dim=16", "--set", "model.blocks.recall.key_dim=8"]
    res = runner.invoke(app, ["memory", "build", str(recipe), "--corpus", str(tmp_path / "corpus.txt"),
                              "--out", str(tmp_path / "mem"), *small])
    assert res.exit_code == 0, res.output
    question = "".join("abcdefghijklmnop"[s] for s in keys[0].tolist())
    query = ["memory", "query", str(tmp_path / "mem"), "--text", question]
    assert runner.invoke(app, query).exit_code == 0
    recipe.write_text(recipe.read_text().replace("seed: 0", "seed: 1"))
    res = runner.invoke(app, query, env={"COLUMNS": "300"})
    assert res.exit_code == 2, res.output
    assert (f"{tmp_path / 'mem'}: built with {recipe} as it was then, and that recipe (with its --set) has changed "
            "since; restore it, or rebuild the memory into another --out") in " ".join(res.output.split())
