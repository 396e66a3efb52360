"""The vocoder: unnormalised log-mel frames back to a waveform with torchaudio's Griffin-Lim."""

from __future__ import annotations

import torch
import torchaudio.functional as AF
from torch import Tensor, nn

from .audio import MelParams


class GriffinLimVocoder(nn.Module):
    """log-mel (T, n_mels), as `LogMel(normalise=False)` computes it -> waveform ((T - 1) * hop,).

    The mel power is mapped back to a linear power spectrogram by the inverse of the same filterbank
    (`MelParams`), then Griffin-Lim finds a phase. T frames give T - 1 hops of samples (10 ms each),
    which `LogMel` reads back as exactly T frames: a frame of the codec is a frame of the vocoder.
    Phases start at zero, so the output is deterministic.
    """

    def __init__(self, params: MelParams = MelParams(), iters: int = 32, momentum: float = 0.99):
        super().__init__()
        self.params, self.iters, self.momentum = params, iters, momentum
        self.inverse = params.inverse_scale()
        self.register_buffer("window", torch.hann_window(params.n_fft), persistent=False)

    def forward(self, mel: Tensor) -> Tensor:
        p = self.params
        power = self.inverse(mel.float().exp().T)  # (n_fft // 2 + 1, T)
        wave = AF.griffinlim(power, self.window, p.n_fft, p.hop, p.n_fft, 2.0, self.iters, self.momentum,
                             length=(mel.shape[0] - 1) * p.hop, rand_init=False)
        peak = float(wave.abs().max())
        return wave / peak * 0.95 if peak > 0.95 else wave

