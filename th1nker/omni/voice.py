"""A synthetic voice: every character is a voiced segment with its own pitch, formants and length."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from th1nker.errors import DataError

from .audio import MelParams

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
SYMBOLS = ALPHABET + " "  # a space is a 40 ms pause


class FormantVoice:
    """Says a string of `ALPHABET` characters (and spaces, short pauses) as a 16 kHz waveform.

    Each character gets, from `seed`, a pitch (100-220 Hz, falling 10% over the segment), three
    formants and a length of 4-8 frames of 10 ms. A segment is a sum of harmonics shaped by the
    formants, with 5 ms fades; the utterance is the segments one after the other, so `frames(text)`
    (the log-mel frames of `say(text)`) is known exactly.
    """

    def __init__(self, params: MelParams = MelParams(), seed: int = 0):
        self.params = params
        g = torch.Generator().manual_seed(seed)
        self.segments: dict[str, Tensor] = {" ": torch.zeros(4 * params.hop)}
        for ch in ALPHABET:
            u = torch.rand(6, generator=g).tolist()
            pitch = 100 + 120 * u[0]
            formants = (250 + 650 * u[1], 850 + 1550 * u[2], 2300 + 1100 * u[3])
            frames = 4 + int(5 * u[4])
            self.segments[ch] = self._segment(pitch, formants, frames * params.hop)

    def _segment(self, pitch: float, formants: tuple[float, ...], n: int) -> Tensor:
        sr = self.params.sample_rate
        t = torch.arange(n) / n
        f0 = pitch * (1 - 0.1 * t)
        phase = 2 * math.pi * torch.cumsum(f0, 0) / sr
        k = torch.arange(1, int(0.45 * sr / pitch) + 1, dtype=torch.float32)[:, None]  # harmonics
        freq = k * f0
        gain = sum(a * torch.exp(-0.5 * ((freq - f) / (60 + 0.05 * f)) ** 2)
                   for a, f in zip((1.0, 0.6, 0.35), formants))
        gain = (gain + 0.02) * (freq < 0.45 * sr)
        wave = (gain * torch.sin(k * phase)).sum(0)
        fade = min(n // 2, sr // 200)
        ramp = 0.5 - 0.5 * torch.cos(torch.linspace(0, math.pi, fade))
        wave[:fade] *= ramp
        wave[n - fade:] *= ramp.flip(0)
        return 0.3 * wave / wave.abs().max()

    def check(self, text: str) -> None:
        bad = sorted(set(text) - set(self.segments))
        if bad or not text:
            raise DataError(f"the synthetic voice says lowercase letters a-z and spaces; "
                            f"{text!r} has {''.join(bad) or 'nothing to say'}")

    def say(self, text: str) -> Tensor:
        """The waveform (samples,) of `text`."""
        self.check(text)
        return torch.cat([self.segments[ch] for ch in text])

    def frames(self, text: str) -> int:
        """Log-mel frames of `say(text)`: one per hop plus the centred STFT's last one."""
        return sum(len(self.segments[ch]) for ch in text) // self.params.hop + 1
