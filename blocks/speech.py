"""The speech output layer: a Talker says the thought as codec frames; a vocoder makes them a wav."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from th1nker.blocks.base import Block, BuildContext
from th1nker.blocks.configs import SpeechOutputConfig
from th1nker.blocks.output import OutputLayer
from th1nker.errors import DataError, RecipeError
from th1nker.omni.audio import MelParams, save_wav
from th1nker.omni.layers import RMSNorm
from th1nker.omni.talker import IGNORE, Talker, TalkerConfig
from th1nker.omni.vocoder import GriffinLimVocoder
from th1nker.registry import register
from th1nker.tasks.speak import SpeechSpec
from th1nker.thought import Output, Thought


@register("output_speech")
class SpeechOutput(OutputLayer):
    """Speech out: a Talker cross-attends to the latent and says it as codec frames (task speak).

    The recorded "logits" are the Talker's context: the projected latent with a last channel that
    marks real slots. `loss` is the Talker's teacher-forced code and stop cross-entropy against the
    target frames; `predict` generates frames greedily (KV cache) until the Talker stops. The task's
    codec is copied in frozen, so a checkpoint carries the codec its Talker was trained with.
    """

    def __init__(self, config: SpeechOutputConfig, ctx: BuildContext):
        Block.__init__(self, config, ctx)  # not OutputLayer's: there is no class head
        spec = ctx.spec
        if not isinstance(spec, SpeechSpec) or spec.codec is None:
            raise RecipeError(f"model.blocks.{ctx.name}: output_speech says codec frames; "
                              "use it with a speech task (task.kind: speak)")
        codec = spec.codec.config
        dim = config.dim or ctx.dim
        self.frames_per_symbol = spec.frames_per_symbol
        self.mel = MelParams(n_mels=codec.n_mels)  # the codec's frames are these mel frames
        self.codec = copy.deepcopy(spec.codec)
        self.norm = RMSNorm(ctx.dim)
        self.proj = nn.Linear(ctx.dim, dim)
        self.talker = Talker(TalkerConfig(codebooks=codec.codebooks, codebook_size=codec.codebook_size, dim=dim,
                                          layers=config.layers, heads=config.heads,
                                          hidden=config.hidden or 2 * dim))

    def forward(self, thought: Thought) -> Thought:
        latent = thought.latent
        text = thought.inputs.get("text")
        real = torch.ones(latent.shape[:2], dtype=torch.bool, device=latent.device)
        if text is not None and text.mask is not None and text.mask.shape == real.shape:
            real = text.mask.bool()  # the latent follows the input: padding slots say nothing
        context = torch.cat([self.proj(self.norm(latent)), real[..., None].to(latent.dtype)], dim=-1)
        thought.record(Output(thought.step, self.name, context))
        return thought

    @staticmethod
    def unpack(logits: Tensor) -> tuple[Tensor, Tensor]:
        """The recorded output -> (Talker context (B, L, dim), real slots (B, L) bool)."""
        return logits[..., :-1], logits[..., -1] > 0.5

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        context, real = self.unpack(logits)
        return self.talker.loss(target, context, real, self.config.stop_weight)

    def predict(self, logits: Tensor) -> Tensor:
        """Greedy code frames (B, T, K), IGNORE after each utterance ends."""
        context, real = self.unpack(logits)
        limit = math.ceil(self.frames_per_symbol * int(real.sum(1).max())) + 2
        return self.talker.generate(context, real, limit)[0]

    @torch.no_grad()
    def wave(self, codes: Tensor) -> Tensor:
        """The waveform of one utterance's frames (T, K) (IGNORE frames are dropped)."""
        codes = codes[codes[:, 0] != IGNORE]
        if len(codes) < 2:
            raise DataError("the Talker stopped before saying two frames; there is nothing to write")
        vocoder = GriffinLimVocoder(self.mel, iters=self.config.griffin_lim_iters).to(codes.device)
        return vocoder(self.codec.decode(codes))


def write_speech(model, thought: Thought, path: Path) -> dict:
    """Say the latest output of the model's speech block into the wav `path`; what was written."""
    outputs = [o for o in thought.latest.values() if isinstance(model.blocks[o.block], SpeechOutput)]
    if not outputs:
        raise DataError(f"--speak {path}: the recipe has no output_speech block, or it has not run yet")
    block = model.blocks[outputs[-1].block]
    codes = block.predict(outputs[-1].logits[:1])[0]
    wave = block.wave(codes)
    rate = block.mel.sample_rate
    save_wav(path, wave, rate)
    frames = int((codes[:, 0] != IGNORE).sum())
    return {"path": str(path), "frames": frames, "samples": len(wave), "sample_rate": rate,
            "seconds": len(wave) / rate}
