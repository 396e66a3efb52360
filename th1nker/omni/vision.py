"""Images in: loading, a small ViT encoder, and the projector into the Thinker's width."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from th1nker.errors import DataError

from .layers import RMSNorm, TransformerBlock


def load_image(path: str | Path, size: int) -> Tensor:
    """An RGB image resized to (3, size, size), scaled to [-1, 1] (mean and std 0.5)."""
    try:
        with Image.open(path) as raw:
            image = raw.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {e}") from e
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3)
    return (pixels.permute(2, 0, 1).float() / 255 - 0.5) / 0.5


class ViTConfig(BaseModel):
    """Sizes of the vision encoder."""

    model_config = ConfigDict(extra="forbid")

    image_size: int = 64
    patch: int = 8
    dim: int = 128
    layers: int = 2
    heads: int = 4
    hidden: int = 256


class ViT(nn.Module):
    """Vision transformer: conv patches, a CLS token, learned positions, bidirectional blocks."""

    def __init__(self, config: ViTConfig | None = None):
        super().__init__()
        self.config = config = config or ViTConfig()
        if config.image_size % config.patch:
            raise ValueError(f"image_size {config.image_size} is not a multiple of "
                             f"patch {config.patch}")
        n_patches = (config.image_size // config.patch) ** 2
        self.patches = nn.Conv2d(3, config.dim, config.patch, stride=config.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.positions = nn.Parameter(torch.randn(1, 1 + n_patches, config.dim) * 0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.heads, config.hidden, rotary=False)
            for _ in range(config.layers))
        self.norm = RMSNorm(config.dim)

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) images at the configured size -> (B, 1 + n_patches, dim); token 0 is CLS."""
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            raise ValueError(f"expected {size}x{size} images, got {tuple(images.shape[-2:])}")
        x = self.patches(images).flatten(2).transpose(1, 2)  # (B, n_patches, dim)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.positions
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class Projector(nn.Module):
    """Linear-GELU-Linear map from an encoder's width to the Thinker's, for images or audio."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
