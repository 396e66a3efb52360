import json

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.errors import DataError, RecipeError
from th1nker.omni import speech_data
from th1nker.omni.audio import LogMel, MelParams
from th1nker.omni.codec import CodecConfig, RVQCodec
from th1nker.omni.speech_data import HELD_OUT, TRAIN, mel_of, mels_of, random_text, split_of, synthetic_codec
from th1nker.omni.talker import IGNORE, Talker, TalkerConfig
from th1nker.omni.vocoder import GriffinLimVocoder
from th1nker.omni.voice import FormantVoice
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.train.run import train_recipe

from conftest import RECIPES

runner = CliRunner()

# A talker recipe small enough to train in seconds: short strings, one thinking step.
TINY = ["tracking.enabled=false", "model.dim=32", "model.blocks.say.layers=1", "model.blocks.say.heads=2",
        "task.train=[2,3]", "task.eval=[3]", "task.eval_examples=8", "schedule.steps=1", "eval.steps=[1]",
        "train.batch_size=16", "train.max_updates=80", "train.checkpoint_every=80", "train.ema=null",
        "train.optimizer.lr=0.004", "train.optimizer.warmup=10"]


@pytest.fixture(scope="module")
def voice():
    return FormantVoice()


def utterance_frames(voice, split: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    texts = [random_text(int(torch.randint(2, 7, (1,), generator=g)), split, g) for _ in range(n)]
    return torch.cat(mels_of([voice.say(t) for t in texts]))


def test_one_frame_rate_from_voice_to_vocoder(voice):
    wave = voice.say("hello world")
    mel = mel_of(wave)
    assert mel.shape == (voice.frames("hello world"), 80)
    assert torch.equal(mels_of([voice.say("ab"), wave])[1], mel)  # batching never changes frames
    params = MelParams()
    spoken = GriffinLimVocoder(params, iters=16)(mel)
    assert len(spoken) == (len(mel) - 1) * params.hop
    again = mel_of(spoken)
    assert again.shape == mel.shape  # T frames -> wave -> the same T frames
    assert (again - mel).square().mean() < 0.25 * (mel - mel.mean(0)).square().mean()


def test_logmel_unnormalised_keeps_the_level():
    wave = torch.sin(torch.arange(8000) * 0.2) * 0.5
    loud, frames = LogMel(normalise=False)(wave)
    quiet, _ = LogMel(normalise=False)(wave * 0.1)
    assert frames.tolist() == [51]
    level = (loud.amax(-1) - quiet.amax(-1))[0, 5:-5]  # the tone's own mel bin, 20 dB apart
    assert torch.allclose(level, torch.full_like(level, 2 * 2.302585), atol=0.01)
    normalised, _ = LogMel()(wave)
    assert abs(float(normalised.mean())) < 1e-4 and abs(float(normalised.std()) - 1) < 0.02  # still standardised


def test_codec_reconstructs_held_out_frames_and_uses_its_codes(voice, tmp_path):
    train = utterance_frames(voice, TRAIN, 60, seed=1)
    held_out = utterance_frames(voice, HELD_OUT, 20, seed=2)
    codec = RVQCodec(CodecConfig(codebooks=2, codebook_size=32, steps=30, batch=512))
    history = codec.fit(train)
    report = codec.report(held_out)
    assert report["mse"] * 5 <= report["mean_frame_mse"], report
    assert min(report["usage"]) >= 0.5, report
    assert history[-1]["commitment"] < history[0]["commitment"] * 1.5
    codes = codec.encode(held_out[:7])
    assert codes.shape == (7, 2) and codes.dtype == torch.long
    codec.save(tmp_path / "codec.safetensors")
    loaded = RVQCodec.load(tmp_path / "codec.safetensors")
    assert torch.equal(loaded.encode(held_out), codec.encode(held_out))
    recon, st_codes, commitment = codec(held_out[:7].requires_grad_())
    assert torch.equal(st_codes, codes) and commitment.item() >= 0
    recon.sum().backward()  # straight-through: the gradient reaches the input


def test_the_shipped_codec_of_the_synthetic_voice(voice):
    codec = synthetic_codec()
    report = codec.report(utterance_frames(voice, HELD_OUT, 40, seed=4))
    assert (codec.config.codebooks, codec.config.codebook_size) == (2, 128)
    assert report["improvement"] >= 5 and min(report["usage"]) >= 0.5, report


def test_dead_codes_are_restarted(voice):
    frames = utterance_frames(voice, TRAIN, 20, seed=3)
    codec = RVQCodec(CodecConfig(codebooks=1, codebook_size=16, steps=0))
    codec.fit(frames)
    codec.codebooks[0, 3] = 1e3  # far from every frame: never chosen
    codec.counts[0, 3] = 0.0
    z = (frames - codec.mean) / codec.std
    assert codec._ema_step(z)["restarted"] >= 1
    assert codec.codebooks[0, 3].abs().max() < 100


def test_codec_file_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        RVQCodec.load(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_text("junk")
    with pytest.raises(DataError, match="not a codec"):
        RVQCodec.load(tmp_path / "bad.safetensors")


def tiny_talker() -> Talker:
    torch.manual_seed(0)
    return Talker(TalkerConfig(codebooks=2, codebook_size=8, dim=16, layers=2, heads=2, hidden=32)).eval()


def test_talker_teacher_forcing_is_shifted_by_one_frame():
    talker = tiny_talker()
    codes, context = torch.randint(0, 8, (2, 6, 2)), torch.randn(2, 3, 16)
    logits, stop = talker(codes, context)
    assert logits.shape == (2, 6, 2, 8) and stop.shape == (2, 7)
    changed = codes.clone()
    changed[:, 3] = (codes[:, 3] + 1) % 8
    logits2, stop2 = talker(changed, context)
    # Frame 3 is read only by the positions after it ...
    assert torch.allclose(logits[:, :3], logits2[:, :3]) and torch.allclose(stop[:, :4], stop2[:, :4])
    assert torch.allclose(logits[:, 3, 0], logits2[:, 3, 0])  # ... and codebook 0 of frame 3 never sees it
    assert not torch.allclose(logits[:, 3, 1], logits2[:, 3, 1])  # codebook 1 sees codebook 0 of its frame
    assert not torch.allclose(logits[:, 4:], logits2[:, 4:])


def test_talker_loss_ignores_padding_and_context_padding():
    talker = tiny_talker()
    codes, context = torch.randint(0, 8, (2, 5, 2)), torch.randn(2, 4, 16)
    codes[1, 3:] = IGNORE
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    loss = talker.loss(codes, context, mask)
    other = context.clone()
    other[1, 2:] = torch.randn(2, 16)
    alone = talker.loss(codes[1:, :3], context[1:, :2])
    assert torch.isfinite(loss) and torch.allclose(loss, talker.loss(codes, other, mask))
    assert torch.allclose(alone, talker.loss(codes[1:, :3], other[1:], mask[1:]))


def test_talker_generation_with_the_kv_cache_equals_without():
    talker = tiny_talker()
    with torch.no_grad():
        talker.stop.bias.fill_(-2.0)  # an untrained Talker would stop at random
        talker.stop.weight.mul_(10)
    context, mask = torch.randn(3, 4, 16), torch.tensor([[True] * 4, [True] * 4, [True, True, False, False]])
    cached, lengths = talker.generate(context, mask, 12)
    full, lengths2 = talker.generate(context, mask, 12, use_cache=False)
    assert torch.equal(cached, full) and torch.equal(lengths, lengths2)
    assert lengths.min() < 12 or cached.shape[1] == 12
    for row, n in zip(cached, lengths):
        assert (row[:n] >= 0).all() and (row[n:] == IGNORE).all()
    # Generation follows the teacher-forced predictions of its own frames.
    n = int(lengths.max())
    assert torch.equal(talker.next_frames(cached[:, :n].clamp(min=0), context, mask)[0, :lengths[0]],
                       cached[0, :lengths[0]])


def test_speak_task_batches_held_out_strings(voice):
    task = make_task(load_recipe(RECIPES / "talker.yaml", ["task.eval_examples=16"]).task, 0)
    g = torch.Generator().manual_seed(0)
    batch = task.train_batch(8, g)
    n = batch.inputs["text"].shape[1]
    assert task.config.train[0] <= n <= task.config.train[1]
    assert batch.target.shape[0] == 8 and batch.target.shape[2] == 2
    texts = [task.vocab.decode(row.tolist()) for row in batch.inputs["text"]]
    assert all(split_of(t) == TRAIN for t in texts)
    frames = (batch.target[..., 0] != IGNORE).sum(1).tolist()
    assert frames == [voice.frames(t) for t in texts]
    held = task.eval_batch(3)
    assert all(split_of(task.vocab.decode(r.tolist())) == HELD_OUT for r in held.inputs["text"])
    assert task.score(held.target, held).all()
    shifted = torch.cat([held.target[:, :1], held.target], dim=1)
    assert not task.score(shifted, held).any()  # one frame late, every frame wrong
    first = task.vocab.decode(held.inputs["text"][0].tolist())
    assert task.decode(held.target[0]) == f"{voice.frames(first)} frames ({voice.frames(first) / 100:.2f} s of speech)"
    with pytest.raises(DataError, match="a-z"):
        task.encode("Hello!")


def test_output_speech_needs_a_speech_task(tmp_path):
    recipe = load_recipe(RECIPES / "talker.yaml", ["task.kind=prefix_parity"])
    from th1nker.model import Th1nker

    with pytest.raises(RecipeError, match="task.kind: speak"):
        Th1nker(recipe, make_task(recipe.task, 0).spec)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("talker") / "run"
    result = train_recipe(RECIPES / "talker.yaml", TINY, out, resume=False)
    return out, result


def test_tiny_talker_predicts_next_frames_above_unigram(trained):
    out, result = trained
    from th1nker.train.evaluate import load_model

    recipe, task, model = load_model(RECIPES / "talker.yaml", out, TINY)
    g = torch.Generator().manual_seed(0)
    train = torch.cat([task.train_batch(64, g).target.flatten(0, 1) for _ in range(4)])
    train = train[train[:, 0] != IGNORE]
    top = [int(torch.bincount(train[:, k]).argmax()) for k in range(2)]
    held = task.eval_batch(3)
    thought = model.think(held)
    block = model.blocks["say"]
    context, real = block.unpack(thought.outputs[-1].logits)
    pred = block.talker.next_frames(held.target, context, real)
    scored = held.target[..., 0] != IGNORE
    accuracy = (pred == held.target)[scored].float().mean(0)
    unigram = torch.stack([(held.target[..., k][scored] == top[k]).float().mean() for k in range(2)])
    assert (accuracy > unigram + 0.2).all(), (accuracy, unigram)


def test_think_speaks_a_wav_of_the_predicted_length(trained, tmp_path):
    out, _ = trained
    wav = tmp_path / "out.wav"
    args = ["think", str(RECIPES / "talker.yaml"), "--checkpoint", str(out), "--input", "bad",
            "--speak", str(wav)]
    for s in TINY:
        args += ["--set", s]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    frames = int(result.output.split("wrote")[1].split(":")[1].split("frames")[0])
    data, rate = sf.read(wav)
    assert rate == MelParams().sample_rate
    assert data.std() > 1e-3
    assert abs(len(data) / MelParams().hop - frames) <= 1


def test_speak_needs_a_speech_block(tiny_recipe, tmp_path):
    from th1nker.blocks.speech import write_speech
    from th1nker.model import Th1nker

    recipe = load_recipe(tiny_recipe)
    task = make_task(recipe.task, 0)
    model = Th1nker(recipe, task.spec)
    with pytest.raises(DataError, match="no output_speech block"):
        write_speech(model, model.think(task.encode("0110")), tmp_path / "out.wav")


def test_speech_prepare_writes_a_folder_the_task_reads(tmp_path, monkeypatch):
    messages = []
    monkeypatch.setattr(speech_data, "espeak", lambda: None)
    codec = CodecConfig(codebook_size=16, steps=20, batch=512)
    manifest = speech_data.prepare(tmp_path / "speech", 40, codec=codec, echo=messages.append)
    assert "espeak-ng is not installed" in messages[0]
    assert manifest["source"] == "synthetic formant voice" and manifest["utterances"] == 40
    assert manifest["codec_held_out"]["improvement"] > 5
    rows = [json.loads(line) for line in (tmp_path / "speech" / "utterances.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {TRAIN, HELD_OUT}
    recipe = load_recipe(RECIPES / "talker.yaml", [f"task.path={tmp_path / 'speech'}", "task.train=[0,0]",
                                                   "task.eval=[1]"])
    task = make_task(recipe.task, 0)
    assert task.spec.classes == 16
    batch = task.eval_batch(1, 4)
    assert batch.target.shape[0] == 4 and (batch.target[:, 0] >= 0).all()


@pytest.mark.skipif(speech_data.espeak() is None, reason="espeak-ng is not installed")
def test_speech_prepare_with_espeak(tmp_path):
    result = runner.invoke(app, ["speech", "prepare", "--out", str(tmp_path / "speech"), "--count", "40",
                                 "--codebook-size", "16", "--codec-steps", "20"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "speech" / "manifest.json").read_text())
    assert manifest["source"].startswith("espeak-ng")
    data, rate = sf.read(tmp_path / "speech" / "wav" / "00000.wav")
    assert rate == 16000 and data.std() > 1e-3
