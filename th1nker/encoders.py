"""Input encoders: each turns one modality of a batch into a Source, once per sample.

Every encoder is called as `encoder(value, mask, grid) -> Source` with the batch's input, its mask
(or None) and its grid; read blocks attend to the Source at every thinking step.
"""

from __future__ import annotations

from torch import Tensor, nn

from th1nker.errors import DataError
from th1nker.omni.audio import AudioConfig, AudioEncoder, LogMel
from th1nker.omni.vision import Projector, ViT, ViTConfig
from th1nker.recipe import AudioEncoderConfig, ImageEncoderConfig, ModelConfig
from th1nker.thought import Source


# batch inputs of token ids in the text vocabulary that the text encoder embeds too, besides "text"
# (a task's long input, which a read_parts block splits into parts)
ENCODED_AS = {"document": "text"}


class TextEncoder(nn.Module):
    """Token ids (B, S) -> (B, S, D) embeddings, the ids kept beside them (D = 0 when a block embeds them)."""

    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)

    def forward(self, ids: Tensor, mask: Tensor | None, grid) -> Source:
        return Source(self.embed(ids), mask, grid, ids)


class ImageEncoder(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] -> CLS then every patch token, (B, 1 + patches, D)."""

    def __init__(self, config: ImageEncoderConfig, dim: int):
        super().__init__()
        self.vit = ViT(ViTConfig(**config.model_dump(exclude={"kind"})))
        self.project = Projector(config.dim, dim)

    def forward(self, images: Tensor, mask: Tensor | None, grid) -> Source:
        size = self.vit.config.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise DataError(f"image input of shape {tuple(images.shape)}, the image encoder takes (B, 3, {size}, "
                            f"{size}); set task.image_size and model.encoders.image.image_size to the same size")
        return Source(self.project(self.vit(images)))


class AudioInputEncoder(nn.Module):
    """16 kHz waveforms (B, T) with a (B, T) mask of real samples -> 12.5 Hz tokens (B, S, D) and their mask."""

    def __init__(self, config: AudioEncoderConfig, dim: int):
        super().__init__()
        self.features = LogMel(n_mels=config.n_mels)  # 16 kHz
        self.encoder = AudioEncoder(AudioConfig(**config.model_dump(exclude={"kind"})))
        self.project = Projector(config.dim, dim)

    def forward(self, wave: Tensor, mask: Tensor | None, grid) -> Source:
        if wave.dim() != 2:
            raise DataError(f"audio input of shape {tuple(wave.shape)}; the audio encoder takes (B, T) waveforms")
        lengths = None if mask is None else mask.sum(dim=1)
        mel, frames = self.features(wave, lengths)
        tokens, real = self.encoder(mel, frames)
        return Source(self.project(tokens).masked_fill(~real[..., None], 0.0), real)


def build_encoders(model: ModelConfig, vocab: int) -> nn.ModuleDict:
    """The text encoder, plus the image and audio encoders the recipe declares. Where a `thinker_lm` block
    embeds the text itself, the text encoder has no weights (it passes the ids on)."""
    embeds = any(b.kind == "thinker_lm" for b in model.blocks.values())
    encoders = {"text": TextEncoder(vocab, 0 if embeds else model.dim)}
    if model.encoders.image is not None:
        encoders["image"] = ImageEncoder(model.encoders.image, model.dim)
    if model.encoders.audio is not None:
        encoders["audio"] = AudioInputEncoder(model.encoders.audio, model.dim)
    return nn.ModuleDict(encoders)
