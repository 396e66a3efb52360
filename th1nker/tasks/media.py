"""Questions about images and sounds: the base of the media tasks, one answer class per example.

A batch holds inputs "text" (B, S) question ids with masks["text"], "image" (B, 3, H, W) in [-1, 1]
and/or "audio" (B, T) 16 kHz waveforms with masks["audio"] (True = real sample); target (B,) answer
classes. `th1nker think --input` takes one example as JSON:
'{"question": "how many shapes?", "image": "scene.png", "audio": "tones.wav"}' ("answer" optional).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from th1nker.errors import DataError
from th1nker.omni.audio import load_wav
from th1nker.omni.vision import load_image
from th1nker.tasks.base import IGNORE, Batch, Task, TaskSpec
from th1nker.tasks.text_qa import CharVocab
from th1nker.tasks.vocab import PieceVocab, load_tokenizer

SAMPLE_RATE = 16000  # what the audio encoder takes
QUESTION_CHARS = string.ascii_lowercase + string.digits + " ?"


@dataclass
class Example:
    """One question about an image and/or a sound, with its answer (None when unknown)."""

    question: str
    answer: str | None = None
    image: Tensor | None = None  # (3, H, W) in [-1, 1]
    audio: Tensor | None = None  # (T,) at SAMPLE_RATE


def pad_waves(waves: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Waveforms of different lengths -> (B, T) zero-padded and the (B, T) mask of real samples."""
    length = max(len(w) for w in waves)
    out = torch.zeros(len(waves), length)
    mask = torch.zeros(len(waves), length, dtype=torch.bool)
    for i, w in enumerate(waves):
        out[i, :len(w)], mask[i, :len(w)] = w, True
    return out, mask


class MediaQA(Task):
    """Base of the image and sound question tasks: vocabulary, answer classes, packing, `think` input."""

    modalities: tuple[str, ...] = ()  # the media every example has: "image", "audio"

    def setup(self, answers: list[str], chars: str = QUESTION_CHARS) -> None:
        """The question vocabulary (characters, or task.tokenizer) and the answer classes."""
        tokenizer = getattr(self.config, "tokenizer", None)
        self.tokenizer = load_tokenizer(tokenizer) if tokenizer else None
        self.vocab = PieceVocab(self.tokenizer) if tokenizer else CharVocab(chars)
        self.answers = list(answers)
        self.classes = {a: i for i, a in enumerate(self.answers)}
        self.spec = TaskSpec(vocab=len(self.vocab), classes=len(self.answers), target="class")

    def pack(self, examples: list[Example], difficulty: int | None) -> Batch:
        questions = [self.vocab.encode(e.question) for e in examples]
        text = torch.full((len(examples), max(len(q) for q in questions)), self.vocab.PAD)
        text_mask = torch.zeros(text.shape, dtype=torch.bool)
        for i, q in enumerate(questions):
            text[i, :len(q)], text_mask[i, :len(q)] = torch.tensor(q), True
        inputs, masks = {"text": text}, {"text": text_mask}
        if "image" in self.modalities:
            inputs["image"] = torch.stack([e.image for e in examples])
        if "audio" in self.modalities:
            inputs["audio"], masks["audio"] = pad_waves([e.audio for e in examples])
        target = torch.tensor([IGNORE if e.answer is None else self.classes[e.answer] for e in examples])
        return Batch(inputs, target, masks, difficulty=difficulty)

    def encode(self, text: str) -> Batch:
        """One example from JSON: question, the media files this task reads, optionally the answer."""
        wanted = {"question", "answer", *self.modalities}
        example = json.dumps({"question": "...", **{m: "PATH" for m in self.modalities}})
        try:
            fields = json.loads(text)
        except json.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict) or not {"question", *self.modalities} <= set(fields) or set(fields) - wanted:
            raise DataError(f"--input {text!r}: {self.name} takes one JSON object, {example}")
        answer = fields.get("answer")
        if answer is not None and answer not in self.classes:
            raise DataError(f"--input: answer {answer!r} is not one of this task's answers {self.answers}")
        return self.pack([self.load(fields["question"], answer, fields.get("image"), fields.get("audio"))], None)

    def load(self, question: str, answer: str | None, image: str | Path | None,
             audio: str | Path | None) -> Example:
        """An example whose media are read from files (images resized, audio resampled to 16 kHz mono)."""
        return Example(question, answer,
                       None if image is None else load_image(image, self.config.image_size),
                       None if audio is None else load_wav(audio, SAMPLE_RATE))

    def decode(self, prediction: Tensor) -> str:
        return self.answers[int(prediction)]


def draw(generator: torch.Generator, lo: int, hi: int) -> int:
    """A whole number in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (1,), generator=generator))


def choose(generator: torch.Generator, options):
    """One of `options`, uniformly."""
    return options[draw(generator, 0, len(options) - 1)]


def check_count(task: str, what: str, difficulty: int, most: int) -> None:
    """Synthetic media tasks: difficulty = the most objects per example, 1..most."""
    if not 1 <= difficulty <= most:
        raise DataError(f"{task}: difficulty {difficulty} = most {what} per example; "
                        f"use 1..{most} (task.train, task.eval)")
