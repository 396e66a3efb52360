"""Audio in: wav files, log-mel features at 100 Hz, and an encoder down to 12.5 Hz tokens."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from th1nker.errors import DataError
from th1nker.io import atomic_write

from .layers import RMSNorm, TransformerBlock


MAX_SECONDS = 60.0  # longer recordings are cut here: a model reads seconds, not hours


def load_wav(path: str | Path, sample_rate: int = 16000, max_seconds: float = MAX_SECONDS) -> Tensor:
    """A mono float waveform (T,) at `sample_rate`: channels are averaged, other rates resampled. Only
    the first `max_seconds` are read (with a warning naming the file), so a long file costs no more."""
    try:
        info = sf.info(str(path))
        frames = min(info.frames, int(max_seconds * info.samplerate))
        data, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as e:
        raise DataError(f"cannot read audio {path}: {e}") from e
    if frames < info.frames:
        warnings.warn(f"{path}: {info.frames / info.samplerate:.0f} s of audio; read the first {max_seconds:.0f} s",
                      stacklevel=2)
    if data.size == 0:
        raise DataError(f"audio {path} has no samples")
    wave = torch.from_numpy(data).mean(dim=1)
    if rate != sample_rate:
        wave = torchaudio.functional.resample(wave, rate, sample_rate)
    return wave


def save_wav(path: str | Path, wave: Tensor, sample_rate: int = 16000) -> None:
    """Write a mono waveform (T,) in [-1, 1] as 16-bit PCM wav, atomically."""
    samples = wave.detach().float().clamp(-1, 1).cpu().numpy()
    atomic_write(Path(path), lambda tmp: sf.write(tmp, samples, sample_rate, format="WAV"))


@dataclass(frozen=True)
class MelParams:
    """The one definition of the mel analysis: LogMel, the speech codec and the vocoder all use it.

    25 ms Hann windows every 10 ms (100 frames a second), power spectrum, HTK mel filters over 0..sr/2.
    """

    sample_rate: int = 16000
    n_mels: int = 80

    @property
    def n_fft(self) -> int:
        return self.sample_rate // 40

    @property
    def hop(self) -> int:
        return self.sample_rate // 100

    def spectrogram(self) -> torchaudio.transforms.MelSpectrogram:
        return torchaudio.transforms.MelSpectrogram(
            self.sample_rate, n_fft=self.n_fft, hop_length=self.hop, n_mels=self.n_mels)

    def inverse_scale(self) -> torchaudio.transforms.InverseMelScale:
        """Mel power -> linear power spectrogram through the filterbank of `spectrogram` (least squares;
        gelsd because the narrowest low filters fall between STFT bins and leave it rank-deficient)."""
        return torchaudio.transforms.InverseMelScale(self.n_fft // 2 + 1, self.n_mels, self.sample_rate,
                                                     driver="gelsd")


class LogMel(nn.Module):
    """Log-mel features at 100 Hz (`MelParams`), standardised per utterance unless `normalise` is off.

    `forward(wave (B, T) or (T,), lengths (B,) in samples)` returns features (B, frames, n_mels) and
    the number of real frames per utterance. Samples past `lengths` are treated as silence, so padding
    never changes the features. Past each utterance's end the features are zero when normalised, else
    log(floor). Unnormalised features keep the absolute level, so the vocoder can invert them.
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 80, normalise: bool = True,
                 floor: float = 1e-10):
        super().__init__()
        self.params = MelParams(sample_rate, n_mels)
        self.hop, self.normalise, self.floor = self.params.hop, normalise, floor
        self.mel = self.params.spectrogram()

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        wave = wave if wave.dim() == 2 else wave[None]
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], device=wave.device)
        wave = wave.float() * _mask(lengths, wave.shape[1])  # padding reads as silence
        mel = self.mel(wave).clamp(min=self.floor).log().transpose(1, 2)
        frames = lengths // self.hop + 1  # the centred STFT puts a frame on every hop
        real = (torch.arange(mel.shape[1], device=mel.device) < frames[:, None])[..., None]
        if not self.normalise:
            return mel.masked_fill(~real, math.log(self.floor)), frames
        count = frames[:, None, None] * mel.shape[2]
        mean = (mel * real).sum(dim=(1, 2), keepdim=True) / count
        var = ((mel - mean).square() * real).sum(dim=(1, 2), keepdim=True) / count
        return ((mel - mean) * torch.rsqrt(var + 1e-5)).masked_fill(~real, 0.0), frames


class AudioConfig(BaseModel):
    """Sizes of the audio encoder."""

    model_config = ConfigDict(extra="forbid")

    n_mels: int = 80
    dim: int = 128
    layers: int = 2
    heads: int = 4
    hidden: int = 256


class AudioEncoder(nn.Module):
    """Three stride-2 convolutions (100 Hz -> 12.5 Hz), then bidirectional rotary blocks.

    Padded frames are zeroed before every convolution so that they never leak into real frames.
    """

    def __init__(self, config: AudioConfig | None = None):
        super().__init__()
        self.config = config = config or AudioConfig()
        widths = [config.n_mels, config.dim, config.dim, config.dim]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, 3, stride=2, padding=1)
                                   for a, b in zip(widths, widths[1:]))
        self.blocks = nn.ModuleList(TransformerBlock(config.dim, config.heads, config.hidden)
                                    for _ in range(config.layers))
        self.norm = RMSNorm(config.dim)

    def forward(self, mel: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """mel (B, T, n_mels) with real frame counts (B,) -> tokens (B, ceil(T/8), dim), mask.

        Tokens past each utterance's end are zero and False in the mask.
        """
        if lengths is None:
            lengths = torch.full((mel.shape[0],), mel.shape[1], device=mel.device)
        x = mel.transpose(1, 2)  # (B, n_mels, T)
        for conv in self.convs:
            x = F.gelu(conv(x * _mask(lengths, x.shape[-1])[:, None]))
            lengths = (lengths + 1) // 2  # a stride-2, kernel-3, padding-1 conv yields ceil(L/2)
        mask = _mask(lengths, x.shape[-1])
        x = x.transpose(1, 2)
        for block in self.blocks:
            x = block(x, mask=mask)
        return self.norm(x).masked_fill(~mask[..., None], 0.0), mask


def _mask(lengths: Tensor, size: int) -> Tensor:
    return torch.arange(size, device=lengths.device) < lengths[:, None]
