"""Read layers: the latent attends to a source. A subclass only says what its source is."""

from __future__ import annotations

import torch
from torch import nn

from th1nker.blocks.base import Block, BuildContext
from th1nker.blocks.configs import ReadConfig
from th1nker.errors import DataError
from th1nker.omni.layers import Attention, RMSNorm
from th1nker.registry import register
from th1nker.thought import Source, Thought


class ReadLayer(Block):
    """Cross-attention from the latent to a source (the base of every read block)."""

    def __init__(self, config: ReadConfig, ctx: BuildContext):
        super().__init__(config, ctx)
        self.norm = RMSNorm(ctx.dim)
        if config.mode == "aligned":
            self.mix = nn.Linear(2 * ctx.dim, ctx.dim)
        else:
            self.attn = Attention(ctx.dim, config.heads, rotary=config.positions)

    def source(self, thought: Thought) -> Source | None:
        """What to read; None when there is nothing to read yet."""
        raise NotImplementedError

    def forward(self, thought: Thought) -> Thought:
        src = self.source(thought)
        if src is None:
            return thought
        h = self.norm(thought.latent)
        if self.config.mode == "aligned":
            if src.tokens.shape[1] != h.shape[1]:
                raise DataError(f"block '{self.name}': mode 'aligned' needs a source as long as the latent "
                                f"({src.tokens.shape[1]} vs {h.shape[1]}); set the state's slots: input")
            update = self.mix(torch.cat([h, src.tokens], dim=-1))
        else:
            update = self.attn(h, context=src.tokens, mask=src.mask)
        thought.latent = thought.latent + update
        return thought


class InputRead(ReadLayer):
    """Reads one encoded input modality; subclasses set `modality`."""

    modality: str = ""

    def source(self, thought: Thought) -> Source | None:
        if self.modality not in thought.inputs:
            raise DataError(f"block '{self.name}' reads '{self.modality}' but the batch has only "
                            f"{sorted(thought.inputs)}; give the task a {self.modality} input")
        src, n = thought.inputs[self.modality], self.config.stream
        if n is None:
            return src
        lo = thought.step * n
        if lo >= src.tokens.shape[1]:
            return None
        return Source(src.tokens[:, lo:lo + n], None if src.mask is None else src.mask[:, lo:lo + n])


@register("read_text")
class TextRead(InputRead):
    """Reads the encoded text input (re-read at every step)."""

    modality = "text"


@register("read_image")
class ImageRead(InputRead):
    """Reads the encoded image: CLS and every patch token, or CLS alone."""

    modality = "image"

    def source(self, thought: Thought) -> Source | None:
        src = super().source(thought)
        return src if self.config.tokens == "all" else Source(src.tokens[:, :1])


@register("read_audio")
class AudioRead(InputRead):
    """Reads the encoded audio tokens (12.5 Hz), padding masked out."""

    modality = "audio"


@register("read_latent")
class ReadLatentLayer(ReadLayer):
    """Reads the medium-term store: the latents of earlier steps of this run."""

    def source(self, thought: Thought) -> Source | None:
        tokens = thought.store.tokens() if thought.store is not None else None
        return None if tokens is None else Source(tokens)
