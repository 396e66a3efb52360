"""The speech codec: log-mel frames <-> discrete codes by residual vector quantisation (RVQ).

Frames are standardised per mel bin (statistics of the training frames, kept as buffers, so the
normalisation is exactly invertible), then codebook 1 quantises the frame, codebook 2 what codebook 1
left over, and so on. Codebooks start from k-means on the training residuals and are trained by
exponential moving averages of the frames assigned to each code (no gradients); a code that falls out
of use is restarted on a frame it currently serves badly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from th1nker.errors import DataError
from th1nker.io import atomic_write


class CodecConfig(BaseModel):
    """Sizes and training constants of the codec."""

    model_config = ConfigDict(extra="forbid")

    n_mels: int = 80
    codebooks: int = Field(2, gt=0)
    codebook_size: int = Field(128, gt=1)
    decay: float = Field(0.95, gt=0, lt=1, description="EMA decay of the code statistics")
    commitment: float = Field(0.25, ge=0, description="weight of the commitment loss")
    dead: float = Field(0.03, ge=0, description="restart a code whose EMA share of frames is below "
                        "`dead` / codebook_size")
    kmeans_iters: int = Field(15, ge=0, description="Lloyd iterations of the k-means initialisation")
    steps: int = Field(200, ge=0, description="EMA training steps after k-means")
    batch: int = Field(2048, gt=0, description="frames per EMA step")


class RVQCodec(nn.Module):
    """`encode(mel (..., n_mels)) -> codes (..., K)`, `decode(codes) -> mel`; buffers, no parameters."""

    def __init__(self, config: CodecConfig | None = None):
        super().__init__()
        self.config = c = config or CodecConfig()
        self.register_buffer("mean", torch.zeros(c.n_mels))
        self.register_buffer("std", torch.ones(c.n_mels))
        self.register_buffer("codebooks", torch.zeros(c.codebooks, c.codebook_size, c.n_mels))
        # EMA statistics: training state only, not part of a saved codec
        self.register_buffer("counts", torch.zeros(c.codebooks, c.codebook_size), persistent=False)
        self.register_buffer("sums", torch.zeros(c.codebooks, c.codebook_size, c.n_mels), persistent=False)

    def _quantise(self, z: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(codes (N, K), the residual each codebook saw) for normalised frames z (N, D)."""
        codes, residuals = [], []
        for book in self.codebooks:
            residuals.append(z)
            idx = torch.cdist(z, book).argmin(-1)
            codes.append(idx)
            z = z - book[idx]
        return torch.stack(codes, -1), residuals

    @torch.no_grad()
    def encode(self, mel: Tensor) -> Tensor:
        z = (mel - self.mean) / self.std
        codes, _ = self._quantise(z.reshape(-1, z.shape[-1]))
        return codes.view(*mel.shape[:-1], -1)

    def decode(self, codes: Tensor) -> Tensor:
        z = sum(book[codes[..., k]] for k, book in enumerate(self.codebooks))
        return z * self.std + self.mean

    def forward(self, mel: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction with a straight-through gradient, codes, commitment loss).

        The commitment loss beta * |z - sg(q)|^2 is what a trainable front end before the codec
        would minimise; with EMA codebooks the codes themselves need no gradient.
        """
        z = (mel - self.mean) / self.std
        codes, _ = self._quantise(z.detach().reshape(-1, z.shape[-1]))
        q = self.decode(codes.view(*mel.shape[:-1], -1)).sub(self.mean).div(self.std)
        commitment = self.config.commitment * (z - q.detach()).square().mean()
        recon = (z + (q - z).detach()) * self.std + self.mean
        return recon, codes.view(*mel.shape[:-1], -1), commitment

    # -- training -----------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, frames: Tensor, seed: int = 0) -> list[dict]:
        """Train on frames (N, n_mels): statistics, k-means per codebook, then the config's EMA steps.

        Returns one record per step: the commitment loss and the codes restarted.
        """
        if frames.shape[0] < self.config.codebook_size:
            raise DataError(f"the codec needs at least {self.config.codebook_size} frames to train, "
                            f"got {frames.shape[0]}")
        c, g = self.config, torch.Generator().manual_seed(seed)
        batch = min(c.batch, frames.shape[0])
        self.mean.copy_(frames.mean(0))
        self.std.copy_(frames.std(0).clamp(min=1e-3))
        z = (frames - self.mean) / self.std
        for k, book in enumerate(self.codebooks):
            book.copy_(kmeans(z, c.codebook_size, c.kmeans_iters, g))
            idx = torch.cdist(z, book).argmin(-1)
            self.counts[k] = torch.bincount(idx, minlength=book.shape[0]) / z.shape[0] * batch
            self.sums[k] = book * self.counts[k, :, None]
            z = z - book[idx]
        history = []
        for _ in range(c.steps):
            pick = torch.randint(0, frames.shape[0], (batch,), generator=g)
            history.append(self._ema_step((frames[pick] - self.mean) / self.std))
        return history

    def _ema_step(self, z: Tensor) -> dict:
        """One EMA update of every codebook on normalised frames z (N, D), then dead-code restarts."""
        c = self.config
        codes, residuals = self._quantise(z)
        restarted = 0
        for k, (book, r) in enumerate(zip(self.codebooks, residuals)):
            onehot = nn.functional.one_hot(codes[:, k], c.codebook_size).float()
            self.counts[k].mul_(c.decay).add_(onehot.sum(0), alpha=1 - c.decay)
            self.sums[k].mul_(c.decay).add_(onehot.T @ r, alpha=1 - c.decay)
            book.copy_(self.sums[k] / self.counts[k, :, None].clamp(min=1e-5))
            dead = self.counts[k] < c.dead * z.shape[0] / c.codebook_size
            if dead.any():  # restart on the frames this codebook serves worst
                error = (r - book[codes[:, k]]).square().sum(-1)
                worst = error.topk(min(int(dead.sum()), len(error))).indices
                slots = dead.nonzero().squeeze(1)[: len(worst)]
                book[slots] = r[worst]
                self.counts[k, slots] = 1.0
                self.sums[k, slots] = r[worst]
                restarted += len(slots)
        q = sum(book[codes[:, k]] for k, book in enumerate(self.codebooks))
        return {"commitment": c.commitment * float((z - q).square().mean()), "restarted": restarted}

    @torch.no_grad()
    def report(self, frames: Tensor) -> dict:
        """Reconstruction MSE on `frames` (log-mel units), that of the mean training frame, code usage."""
        codes = self.encode(frames)
        mse = float((self.decode(codes) - frames).square().mean())
        baseline = float((frames - self.mean).square().mean())
        used = [int(torch.unique(codes[:, k]).numel()) for k in range(codes.shape[1])]
        return {"mse": mse, "mean_frame_mse": baseline, "improvement": baseline / max(mse, 1e-12),
                "codes_used": used, "usage": [u / self.config.codebook_size for u in used]}

    # -- files --------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        tensors = {k: v.contiguous() for k, v in self.state_dict().items()}
        meta = {"config": self.config.model_dump_json()}
        atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    @classmethod
    def load(cls, path: Path) -> "RVQCodec":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                config = CodecConfig.model_validate_json(f.metadata()["config"])
            codec = cls(config)
            codec.load_state_dict(load_file(str(path)))
        except FileNotFoundError:
            raise DataError(f"{path}: codec file not found; write it with `th1nker speech prepare`") from None
        except Exception as e:  # safetensors and pydantic report damage in several ways
            raise DataError(f"{path}: not a codec file ({e}); rewrite it with `th1nker speech prepare`") from None
        return codec


def kmeans(x: Tensor, k: int, iters: int, g: torch.Generator) -> Tensor:
    """k centroids of x (N, D): k-means++ seeding, then Lloyd iterations; empty clusters re-seeded."""
    centroids = x[torch.randint(0, len(x), (1,), generator=g)]
    dist = torch.cdist(x, centroids).squeeze(1).square()
    for _ in range(k - 1):
        pick = torch.multinomial(dist + 1e-12, 1, generator=g)
        centroids = torch.cat([centroids, x[pick]])
        dist = torch.minimum(dist, (x - x[pick]).square().sum(-1))
    for _ in range(iters):
        idx = torch.cdist(x, centroids).argmin(-1)
        counts = torch.bincount(idx, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, idx, x)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            far = torch.cdist(x, centroids).amin(-1).topk(int(empty.sum())).indices
            centroids[empty] = x[far]
    return centroids
