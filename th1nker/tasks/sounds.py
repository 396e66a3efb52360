"""Synthetic sounds: sequences of sine tones at 16 kHz, and questions about them.

A sound holds 1..difficulty tones of 120 ms, 80-120 ms apart, from a set of low (262-392 Hz) and high
(784-1175 Hz) pitches, with soft onsets and a faint noise floor. A clip lasts 0.92-1.0 s whatever it
holds, so its length says nothing about its tones. Questions: how many tones, whether they rise or
fall, whether the first is higher than the last, whether the first is low or high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from th1nker.tasks import register_task
from th1nker.tasks.base import Batch
from th1nker.tasks.media import SAMPLE_RATE, Example, MediaQA, check_count, choose, draw

PITCHES = {"low": (262.0, 330.0, 392.0), "high": (784.0, 988.0, 1175.0)}
TONE, GAP, ONSET, CLIP = 0.12, (0.08, 0.12), (0.0, 0.05), (0.92, 1.0)  # seconds
FADE = 0.01  # raised-cosine fade in and out
MAX_TONES = 4  # the most that fit the shortest clip
NOISE = 0.003


@dataclass(frozen=True)
class Tone:
    start: float  # seconds
    pitch: float  # Hz
    amplitude: float


def register(pitch: float) -> str:
    return "low" if pitch in PITCHES["low"] else "high"


def uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def random_tones(pitches: list[float], generator: torch.Generator) -> list[Tone]:
    """One tone per pitch, in order, at random gaps and loudness."""
    tones, t = [], uniform(generator, *ONSET)
    for pitch in pitches:
        tones.append(Tone(t, pitch, uniform(generator, 0.3, 0.8)))
        t += TONE + uniform(generator, *GAP)
    return tones


def synth(tones: list[Tone], seconds: float, generator: torch.Generator) -> Tensor:
    """The waveform (T,) at 16 kHz: the tones over a faint noise floor."""
    wave = NOISE * torch.randn(round(seconds * SAMPLE_RATE), generator=generator)
    n, fade = round(TONE * SAMPLE_RATE), round(FADE * SAMPLE_RATE)
    t = torch.arange(n) / SAMPLE_RATE
    envelope = torch.ones(n)
    ramp = 0.5 - 0.5 * torch.cos(torch.linspace(0, math.pi, fade))
    envelope[:fade], envelope[-fade:] = ramp, ramp.flip(0)
    for tone in tones:
        i = round(tone.start * SAMPLE_RATE)
        wave[i:i + n] += tone.amplitude * envelope * torch.sin(2 * math.pi * tone.pitch * t)
    return wave


def random_pitches(count: int, generator: torch.Generator, order: str | None = None) -> list[float]:
    """`count` pitches: any, or distinct and rising / falling with `order`."""
    every = sorted(PITCHES["low"] + PITCHES["high"])
    if order is None:
        return [choose(generator, every) for _ in range(count)]
    chosen = sorted(every[i] for i in torch.randperm(len(every), generator=generator)[:count].tolist())
    return chosen if order == "rising" else chosen[::-1]


def random_sound(count: int, generator: torch.Generator, order: str | None = None) -> tuple[list[Tone], Tensor]:
    """`count` tones (rising / falling with `order`) and their clip."""
    tones = random_tones(random_pitches(count, generator, order), generator)
    return tones, synth(tones, uniform(generator, *CLIP), generator)


def ask_sound(count: int, generator: torch.Generator) -> tuple[str, str, list[Tone], Tensor]:
    """A random question about a new sound of `count` tones: question, answer, tones, clip."""
    kind = draw(generator, 0, 3 if count > 1 else 1)
    if kind == 2:
        order = choose(generator, ["rising", "falling"])
        tones, wave = random_sound(count, generator, order)
        return "do the tones rise or fall?", order, tones, wave
    tones, wave = random_sound(count, generator)
    if kind == 0:
        return "how many tones?", str(count), tones, wave
    if kind == 1:
        return "is the first tone low or high?", register(tones[0].pitch), tones, wave
    higher = tones[0].pitch > tones[-1].pitch
    return "is the first tone higher than the last?", "yes" if higher else "no", tones, wave


@register_task("sound_qa")
class SoundQA(MediaQA):
    """Questions about a synthetic sequence of tones: how many, rising or falling, low or high."""

    modalities = ("audio",)

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        self.setup(["no", "yes", *map(str, range(MAX_TONES + 1)), "rising", "falling", "low", "high"])

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        check_count(self.name, "tones", difficulty, MAX_TONES)
        examples = []
        for _ in range(n):
            question, answer, _, wave = ask_sound(draw(generator, 1, difficulty), generator)
            examples.append(Example(question, answer, audio=wave))
        return self.pack(examples, difficulty)
