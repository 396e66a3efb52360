"""The process layer: transforms the latent on its own, with the same weights at every step."""

from __future__ import annotations

from torch import Tensor, nn

from th1nker.blocks.base import Block, BuildContext
from th1nker.blocks.configs import ProcessConfig
from th1nker.blocks.grid import to_map, to_slots
from th1nker.errors import RecipeError
from th1nker.omni.layers import Attention, RMSNorm, SwiGLU
from th1nker.registry import register
from th1nker.thought import Thought


class ConvMixer(nn.Module):
    """A 1-D convolution over latent slots, or 2-D over the input's grid."""

    def __init__(self, dim: int, kernel: int, two_d: bool):
        super().__init__()
        conv = nn.Conv2d if two_d else nn.Conv1d
        self.conv = conv(dim, dim, kernel, padding=kernel // 2)
        self.two_d = two_d

    def forward(self, x: Tensor, grid: tuple[int, int] | None) -> Tensor:
        if not self.two_d:
            return self.conv(x.transpose(1, 2)).transpose(1, 2)
        return to_slots(self.conv(to_map(x, grid, "conv2d mixer")))


class TokenMLP(nn.Module):
    """MLP across positions (MLP-Mixer token mixing); needs a fixed number of slots."""

    def __init__(self, slots: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(slots, hidden), nn.GELU(), nn.Linear(hidden, slots))

    def forward(self, x: Tensor, grid=None) -> Tensor:
        return self.net(x.transpose(1, 2)).transpose(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = Attention(dim, heads)

    def forward(self, x: Tensor, grid=None) -> Tensor:
        return self.attn(x)


@register("process")
class ProcessLayer(Block):
    """Transforms the latent: `layers` x (mixer over positions + SwiGLU), pre-norm residual."""

    def __init__(self, config: ProcessConfig, ctx: BuildContext):
        super().__init__(config, ctx)
        d, hidden = ctx.dim, config.hidden or 2 * ctx.dim
        if config.mixer == "mlp" and ctx.slots is None:
            raise RecipeError(f"model.blocks.{ctx.name}.mixer: 'mlp' needs the states it is called on to have a fixed number of slots (model.states.*.slots: an int)")
        self.mixers = nn.ModuleList(self._mixer(config, ctx) for _ in range(config.layers))
        self.mixer_norms = nn.ModuleList(RMSNorm(d) for _ in range(config.layers))
        self.mlps = nn.ModuleList(SwiGLU(d, hidden) for _ in range(config.layers))
        self.mlp_norms = nn.ModuleList(RMSNorm(d) for _ in range(config.layers))
        self.out_norm = RMSNorm(d) if config.norm_out else None

    @staticmethod
    def _mixer(config, ctx: BuildContext) -> nn.Module:
        if config.mixer == "attention":
            return SelfAttention(ctx.dim, config.heads)
        if config.mixer == "mlp":
            return TokenMLP(ctx.slots, 2 * ctx.slots)
        return ConvMixer(ctx.dim, config.kernel, two_d=config.mixer == "conv2d")

    def forward(self, thought: Thought) -> Thought:
        h = thought.latent
        for mixer, mn, mlp, fn in zip(self.mixers, self.mixer_norms, self.mlps, self.mlp_norms):
            h = h + mixer(mn(h), thought.grid)
            h = h + mlp(fn(h))
        thought.latent = self.out_norm(h) if self.out_norm is not None else h
        return thought
