"""Media and text tasks: generated answers recomputed from the pixels and samples, file loaders, tokenizers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from th1nker.errors import DataError
from th1nker.omni.tokenizer import Tokenizer
from th1nker.recipe import TaskConfig
from th1nker.tasks import IGNORE, make_task
from th1nker.tasks.text_qa import DEFAULT_PATH, parse_pairs

RGB = {(1, -1, -1): "red", (-1, 1, -1): "green", (-1, -1, 1): "blue", (1, 1, -1): "yellow"}




def task(kind, **fields):
    fields = {"train": (1, 4), "eval": [4], "eval_examples": 8, **fields}
    return make_task(TaskConfig(kind=kind, **fields), seed=0)


def read_scene(image) -> list[tuple[int, int, str, str]]:
    """(row, col, colour, kind) of every shape, in reading order, from the pixels alone."""
    cell = image.shape[-1] // 4
    shapes = []
    for r in range(4):
        for c in range(4):
            patch = image[:, r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
            lit = (patch > 0).any(dim=0)
            if not lit.any():
                continue
            colour = RGB[tuple(int(v) for v in patch[:, lit][:, 0].round().tolist())]
            rows, cols = lit.nonzero().T
            fill = float(lit.sum()) / float((rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1))
            shapes.append((r, c, colour, "square" if fill > 0.95 else "circle" if fill > 0.7 else "triangle"))
    return shapes


def read_tones(wave) -> list[float]:
    """The pitch (Hz) of each tone, from the samples alone: loud 5 ms frames in runs, FFT peak of each run."""
    frames = wave[: len(wave) // 80 * 80].view(-1, 80)
    loud = (frames.pow(2).mean(dim=1).sqrt() > 0.05).tolist()
    runs, start = [], None
    for i, on in enumerate(loud + [False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append(wave[start * 80:i * 80])
            start = None
    return [float(torch.fft.rfft(r).abs().argmax()) * 16000 / len(r) for r in runs]


def scene_answer(question: str, shapes) -> str:
    if question == "how many shapes?":
        return str(len(shapes))
    if question == "what colour is the first shape?":
        return shapes[0][2]
    if m := re.fullmatch(r"is there a (\w+) (\w+)\?", question):
        return "yes" if any(s[2:] == m.groups() for s in shapes) else "no"
    if m := re.fullmatch(r"how many (red|green|blue|yellow) shapes\?", question):
        return str(sum(s[2] == m[1] for s in shapes))
    m = re.fullmatch(r"how many (\w+)s\?", question)
    return str(sum(s[3] == m[1] for s in shapes))


def sound_answer(question: str, pitches: list[float]) -> str:
    if question == "how many tones?":
        return str(len(pitches))
    if question == "is the first tone low or high?":
        return "low" if pitches[0] < 600 else "high"
    if question == "do the tones rise or fall?":
        return "rising" if pitches == sorted(pitches) else "falling"
    return "yes" if pitches[0] > pitches[-1] + 30 else "no"


def questions(t, batch) -> list[str]:
    return [t.vocab.decode(q[m].tolist()) for q, m in zip(batch.inputs["text"], batch.masks["text"])]


def test_scene_answers_match_the_pixels():
    t = task("scene_qa", train=(1, 6), eval=[6])
    batch = t.batch(300, 6, torch.Generator().manual_seed(1))
    assert batch.inputs["image"].shape == (300, 3, 32, 32) and "image" not in batch.masks
    asked = questions(t, batch)
    assert len({re.sub(r"red|green|blue|yellow|square|circle|triangle", "X", q) for q in asked}) == 5
    for q, image, y in zip(asked, batch.inputs["image"], batch.target):
        shapes = read_scene(image)
        assert 1 <= len(shapes) <= 6
        assert t.decode(y) == scene_answer(q, shapes), q


def test_sound_answers_match_the_samples():
    t = task("sound_qa")
    batch = t.batch(120, 4, torch.Generator().manual_seed(2))
    lengths = batch.masks["audio"].sum(dim=1)
    assert ((lengths >= 0.92 * 16000) & (lengths <= 16000)).all()
    assert (batch.inputs["audio"][~batch.masks["audio"]] == 0).all()
    asked = questions(t, batch)
    assert len(set(asked)) == 4
    for q, wave, n, y in zip(asked, batch.inputs["audio"], lengths, batch.target):
        pitches = read_tones(wave[:n])
        assert 1 <= len(pitches) <= 4
        assert t.decode(y) == sound_answer(q, pitches), (q, pitches)


def test_omni_answers_need_both_media():
    t = task("omni_qa")
    batch = t.batch(120, 4, torch.Generator().manual_seed(3))
    asked = questions(t, batch)
    assert len(set(asked)) == 3 and t.spec.target == "class"
    lengths = batch.masks["audio"].sum(dim=1)
    for q, image, wave, n, y in zip(asked, batch.inputs["image"], batch.inputs["audio"], lengths, batch.target):
        shapes, tones = len(read_scene(image)), len(read_tones(wave[:n]))
        expected = {"are there as many tones as shapes?": "yes" if tones == shapes else "no",
                    "are there more tones than shapes?": "yes" if tones > shapes else "no"}.get(q, str(shapes + tones))
        assert t.decode(y) == expected, q


def test_generated_tasks_are_seeded_and_bounded():
    t = task("omni_qa")
    a, b = (t.batch(8, 3, torch.Generator().manual_seed(5)) for _ in range(2))
    assert all(torch.equal(a.inputs[k], b.inputs[k]) for k in a.inputs) and torch.equal(a.target, b.target)
    with pytest.raises(DataError, match="use 1..4"):
        t.batch(2, 5, torch.Generator())


def write_wav(path, samples, rate):
    sf.write(path, np.asarray(samples, dtype="float32"), rate, subtype="FLOAT")


def media_file(tmp_path, rows) -> str:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_media_qa_loads_images_and_sounds(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "img" / "red.png")
    Image.new("RGB", (10, 10), (0, 0, 255)).save(tmp_path / "img" / "blue.png")
    write_wav(tmp_path / "8k.wav", 0.5 * np.sin(2 * np.pi * 440 * np.arange(4000) / 8000), 8000)
    write_wav(tmp_path / "stereo.wav", np.stack([np.full(1600, 0.5), np.full(1600, -0.1)], axis=1), 16000)
    rows = [{"image": "img/red.png", "audio": "8k.wav", "question": "what colour?", "answer": "red"},
            {"image": "img/blue.png", "audio": "stereo.wav", "question": "what colour?", "answer": "blue"}]
    t = task("media_qa", path=media_file(tmp_path, rows), eval=[0, 1], image_size=16)
    assert t.answers == ["blue", "red"] and t.spec.classes == 2
    red, blue = t.examples
    assert red.image.shape == (3, 16, 16) and torch.allclose(red.image[0], torch.ones(16, 16))
    assert red.audio.shape == (8000,) and 0.4 < red.audio.abs().max() < 0.6  # 8 kHz resampled to 16 kHz
    assert blue.audio.shape == (1600,) and torch.allclose(blue.audio, torch.full((1600,), 0.2))  # downmixed
    train, held = t.batch(4, 0, torch.Generator()), t.eval_batch(1)  # one example in each split
    assert {t.decode(y) for y in train.target} | {t.decode(y) for y in held.target} == {"red", "blue"}
    for batch in (train, held):
        assert batch.inputs["image"].shape[1:] == (3, 16, 16) and len(set(batch.masks["audio"].sum(1).tolist())) == 1


@pytest.mark.parametrize("name, make, error", [
    ("bad.png", lambda p: p.write_bytes(b"\x89PNG not an image"), "cannot read image .*bad.png"),
    ("empty.wav", lambda p: write_wav(p, np.zeros(0), 16000), "empty.wav has no samples"),
    ("noise.wav", lambda p: p.write_bytes(b"RIFF junk"), "cannot read audio .*noise.wav"),
])
def test_media_qa_names_the_broken_file(tmp_path, name, make, error):
    make(tmp_path / name)
    media = "audio" if name.endswith(".wav") else "image"
    rows = [{media: name, "question": "what?", "answer": "x"}]
    with pytest.raises(DataError, match=error):
        task("media_qa", path=media_file(tmp_path, rows), eval=[0])


def test_media_qa_rejects_bad_lines(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    good = {"image": "a.png", "question": "q?", "answer": "a"}
    with pytest.raises(DataError, match=r"data.jsonl:2: expected a question, an answer and the media of line 1"):
        task("media_qa", path=media_file(tmp_path, [good, {"audio": "a.wav", "question": "q?", "answer": "a"}]))
    (tmp_path / "data.jsonl").write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(DataError, match="data.jsonl:2: not valid JSON"):
        task("media_qa", path=str(tmp_path / "data.jsonl"))


def test_think_input_is_json_with_media_files(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "s.png")
    write_wav(tmp_path / "t.wav", np.zeros(8000), 16000)
    t = task("omni_qa")
    batch = t.encode(json.dumps({"question": "how many shapes and tones are there?", "image": str(tmp_path / "s.png"),
                                 "audio": str(tmp_path / "t.wav"), "answer": "3"}))
    assert batch.inputs["image"].shape == (1, 3, 32, 32) and batch.inputs["audio"].shape == (1, 8000)
    assert t.decode(batch.target[0]) == "3"
    with pytest.raises(DataError, match='takes one JSON object, {"question": "...", "image": "PATH", "audio": "PATH"}'):
        t.encode("how many shapes?")


@pytest.fixture(scope="module")
def qa_tokenizer(tmp_path_factory) -> str:
    corpus = tmp_path_factory.mktemp("tok") / "qa.txt"
    corpus.write_text("\n".join(q + " " + a for q, a in parse_pairs(DEFAULT_PATH.read_text())) + "\n")
    path = corpus.parent / "qa.model"
    Tokenizer.train(corpus, 300, path)
    return str(path)


def test_text_qa_with_a_sentencepiece_tokenizer(qa_tokenizer):
    tok = Tokenizer(qa_tokenizer)
    t = task("text_qa", tokenizer=qa_tokenizer, train=(0, 0), eval=[0, 1])
    assert t.spec.vocab == t.spec.classes == tok.vocab_size and t.tokenizer is not None
    batch = t.batch(64, 0, torch.Generator().manual_seed(0))
    for x, m, y in zip(batch.inputs["text"], batch.masks["text"], batch.target):
        question = tok.decode(x[m].tolist())
        answer = dict(parse_pairs(DEFAULT_PATH.read_text()))[question]
        scored = y[y != IGNORE].tolist()
        assert scored == tok.encode(answer) + [tok.eos_id] and t.decode(y) == answer
    assert t.decode(t.encode("what is 3 plus 4? 7.").target[0]) == "7"
    with pytest.raises(DataError, match="task.tokenizer not found"):
        task("text_qa", tokenizer="missing.model", eval=[0, 1])


def test_text_lm_windows_are_shifted_by_one():
    t = task("text_lm", train=(32, 32), eval=[32])
    batch = t.batch(8, 32, torch.Generator().manual_seed(0))
    x, y = batch.inputs["text"], batch.target
    assert x.shape == y.shape == (8, 32) and torch.equal(x[:, 1:], y[:, :-1]) and int(x.max()) < t.spec.vocab
    held = t.eval_batch(32)
    stream = t.held_ids.tolist()
    first = held.inputs["text"][0].tolist()
    assert any(stream[i:i + 32] == first for i in range(len(stream) - 32))  # drawn from the held-out tail
    guess = y.clone()
    guess[:, :-1] = -1  # only the last position is judged
    assert t.score(guess, batch).all() and not t.score(guess.roll(1, dims=1), batch).all()


def test_the_tokenizer_is_kept_with_the_checkpoints(qa_tokenizer, tiny_recipe, tmp_path):
    from th1nker.train.run import train_recipe

    out = tmp_path / "run"
    train_recipe(tiny_recipe, ["task.kind=text_qa", "task.train=[0,0]", "task.eval=[1]", f"task.tokenizer={qa_tokenizer}",
                               "tracking.enabled=false", "train.max_updates=2", "eval.steps=[1]"], out, resume=False)
    assert (out / "tokenizer.model").read_bytes() == Tokenizer(qa_tokenizer).to_bytes()
    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    assert json.loads((latest / "state.json").read_text())["tokenizer"] == "tokenizer.model"
