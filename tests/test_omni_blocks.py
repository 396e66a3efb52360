"""μOmni backends in the model: image/audio encoders and read blocks, the thinker block, MoE in training."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from th1nker.encoders import AudioInputEncoder
from th1nker.errors import DataError, RecipeError
from th1nker.model import Th1nker
from th1nker.omni.layers import MoE
from th1nker.recipe import AudioEncoderConfig, validate_recipe
from th1nker.tasks import make_task
from th1nker.train.evaluate import accuracy_by_steps, zeroed
from th1nker.train.loop import Trainer

SMALL = {"dim": 16, "layers": 1, "heads": 2, "hidden": 32}
OMNI = {
    "name": "tiny-omni",
    "task": {"kind": "omni_qa", "train": [1, 3], "eval": [3], "eval_examples": 8},
    "model": {
        "dim": 16, "latent": {"slots": 4, "init": "learned"},
        "encoders": {"image": {"kind": "vit", "image_size": 32, "patch": 8, **SMALL},
                     "audio": {"kind": "audio", "n_mels": 40, **SMALL}},
        "blocks": {"text": {"kind": "read_text", "heads": 2}, "image": {"kind": "read_image", "heads": 2},
                   "audio": {"kind": "read_audio", "heads": 2}, "answer": {"kind": "output_class"}},
    },
    "graph": {"start": ["text"], "edges": {"text": ["image"], "image": ["audio"], "audio": ["answer"], "answer": ["text"]}},
    "schedule": {"step": ["text", "image", "audio", "answer"], "steps": 2},
    "train": {"batch_size": 4, "max_updates": 3, "log_every": 1, "ema": None},
    "eval": {"steps": [1, 2], "batch_size": 8},
    "tracking": {"enabled": False},
}
LM = {
    "name": "tiny-lm",
    "task": {"kind": "prefix_parity", "train": [12, 12], "eval": [12], "eval_examples": 8},
    "model": {"dim": 16, "latent": {"slots": "input", "init": "fixed"},
              "blocks": {"read": {"kind": "read_text", "mode": "aligned"},
                         "lm": {"kind": "thinker", "layers": 2, "heads": 2, "kv_heads": 1, "hidden": 32},
                         "answer": {"kind": "output_tokens"}}},
    "graph": {"start": ["read"], "edges": {"read": ["lm"], "lm": ["answer"], "answer": ["read"]}},
    "schedule": {"step": ["read", "lm", "answer"], "steps": 2},
    "train": {"batch_size": 8, "max_updates": 3, "log_every": 1, "ema": None},
    "tracking": {"enabled": False},
}




def recipe(base: dict, **changes):
    data = yaml.safe_load(yaml.safe_dump(base))
    for path, value in changes.items():
        *keys, last = path.split("__")
        node = data
        for k in keys:
            node = node[k]
        node[last] = value
    return validate_recipe(data)


def build(r):
    torch.manual_seed(0)
    task = make_task(r.task, r.seed)
    return Th1nker(r, task.spec), task


def test_image_and_audio_reads_in_a_tiny_model():
    model, task = build(recipe(OMNI))
    batch = task.batch(4, 3, torch.Generator().manual_seed(0))
    thought = model.think(batch, generator=torch.Generator().manual_seed(0))
    assert thought.trace == ["text", "image", "audio", "answer"] * 2
    assert thought.inputs["image"].tokens.shape == (4, 17, 16) and thought.inputs["image"].mask is None
    assert model.prediction(thought).shape == (4,)
    assert model.blocks["image"].source(thought).tokens.shape == (4, 17, 16)
    cls, _ = build(recipe(OMNI, model__blocks__image={"kind": "read_image", "tokens": "cls"}))
    assert torch.equal(cls.blocks["image"].source(thought).tokens, thought.inputs["image"].tokens[:, :1])
    # the image is read: another image changes the answer logits
    other = task.batch(4, 3, torch.Generator().manual_seed(1))
    batch.inputs["image"] = other.inputs["image"]
    again = model.think(batch, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(again.outputs[-1].logits, thought.outputs[-1].logits)


def test_reading_an_undeclared_encoder_is_a_recipe_error():
    data = yaml.safe_load(yaml.safe_dump(OMNI))
    del data["model"]["encoders"]["audio"]
    with pytest.raises(RecipeError, match="model.blocks.audio reads 'audio': declare model.encoders.audio"):
        build(validate_recipe(data))
    with pytest.raises(RecipeError, match="stream needs tokens: all"):
        recipe(OMNI, model__blocks__image={"kind": "read_image", "tokens": "cls", "stream": 4})
    with pytest.raises(RecipeError, match="patch 5 must divide image_size 32"):
        recipe(OMNI, model__encoders__image={"kind": "vit", "patch": 5})


def test_audio_encoder_masks_padding():
    torch.manual_seed(0)
    enc = AudioInputEncoder(AudioEncoderConfig(n_mels=40, **SMALL), 24).eval()
    wave = torch.randn(2, 16000) * 0.1
    mask = torch.arange(16000) < torch.tensor([[16000], [8000]])
    other = torch.cat([wave[1, :8000], torch.randn(4000)])[None]  # the short clip, other padding
    with torch.no_grad():
        src = enc(wave, mask, None)
        again = enc(other, torch.arange(12000)[None] < 8000, None)
    real = [math.ceil((n // 160 + 1) / 8) for n in (16000, 8000)]  # 100 Hz frames, then / 8
    assert src.tokens.shape == (2, real[0], 24) and src.mask.sum(dim=1).tolist() == real
    assert (src.tokens[~src.mask] == 0).all()
    assert again.mask.sum().item() == real[1]
    assert torch.allclose(src.tokens[1, :real[1]], again.tokens[0, :real[1]], atol=1e-5)  # padding changes nothing


def test_ablation_zeroes_one_input():
    model, task = build(recipe(OMNI))
    batch = task.eval_batch(3)
    out = zeroed(batch, ["image"])
    assert not out.inputs["image"].any() and torch.equal(out.inputs["audio"], batch.inputs["audio"])
    model, task = build(recipe(OMNI, eval__ablate=["imgae"]))
    with pytest.raises(DataError, match=r"eval.ablate: \['imgae'\] not among this task's inputs"):
        accuracy_by_steps(model, task, [3], [1])


def test_thinker_block_is_causal():
    model, _ = build(recipe(LM))
    model.eval()
    x = torch.randint(0, 2, (3, 12), generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, 7] = 1 - y[:, 7]
    from th1nker.tasks import Batch

    with torch.no_grad():
        a, b = (model.think(Batch({"text": t}, t)) for t in (x, y))
    for out_a, out_b in zip(a.outputs, b.outputs):
        assert torch.allclose(out_a.logits[:, :7], out_b.logits[:, :7], atol=1e-6)
        assert not torch.allclose(out_a.logits[:, 7:], out_b.logits[:, 7:])


def test_moe_thinker_spreads_tokens_and_logs_its_aux_loss(tmp_path):
    r = recipe(LM, model__blocks__lm={"kind": "thinker", "layers": 1, "heads": 2, "hidden": 32, "experts": 4})
    trainer = Trainer(r, make_task(r.task, r.seed))
    logged = []

    class Recorder:
        def metrics(self, values, step):
            logged.append(values)

    trainer.fit(tmp_path, Recorder())
    assert len(logged) == 3 and all(0.9 < m["aux_balance"] < 1.5 for m in logged)  # 1 = perfectly balanced
    moe = next(m for m in trainer.model.modules() if isinstance(m, MoE))
    seen = []
    moe.register_forward_hook(lambda module, args, out: seen.append(args[0].reshape(-1, args[0].shape[-1])))
    with torch.no_grad():
        trainer.model.think(make_task(r.task, 0).batch(32, 12, torch.Generator().manual_seed(1)))
    chosen = moe.router(torch.cat(seen)).topk(2, dim=-1).indices
    share = torch.bincount(chosen.flatten(), minlength=4).float() / chosen.numel()
    assert share.min() > 0.1, share  # every expert gets a fair part of the tokens
