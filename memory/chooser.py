"""The read chooser: a policy over the candidate blocks a read could take, trained by RL."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from th1nker.omni.layers import RMSNorm
from th1nker.thought import ReadChoice, Thought


class ReadChooser(nn.Module):
    """One logit per candidate block: logit_c = a * prior_c + g * max_m q(latent) . k(x_cm) / sqrt(D).

    prior: the indexer's log-softmaxed scores of the candidates, so that an untrained chooser (a = 1,
    k = 0: an equal match for every candidate) picks what the indexer ranks first; the learned match of the latent against each of the
    candidate's latents is what RL adds (`th1nker rl` with `rl.policy: reads`). Inputs are detached:
    the chooser changes which block is read, never what the model computes from it.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.q = nn.Sequential(RMSNorm(dim), nn.Linear(dim, dim))
        self.k = nn.Sequential(RMSNorm(dim), nn.Linear(dim, dim))
        self.prior_weight = nn.Parameter(torch.ones(()))
        self.match_weight = nn.Parameter(torch.ones(()))
        # Zero keys: the match starts equal for every candidate (so the indexer's order decides), yet
        # its gradient is not zero, as it would be with a zero match weight.
        nn.init.zeros_(self.k[1].weight)
        nn.init.zeros_(self.k[1].bias)

    def forward(self, latent: Tensor, candidates: Tensor, prior: Tensor) -> Tensor:
        """(B, L, D) latent, (B, C, M, D) candidates, (B, C) indexer scores -> (B, C) logits."""
        q = self.q(latent.detach()).mean(dim=1)
        match = torch.einsum("bd,bcmd->bcm", q, self.k(candidates.detach())).amax(dim=-1)
        prior = prior.detach().float().log_softmax(dim=-1)
        return self.prior_weight * prior + self.match_weight * match.float() / math.sqrt(q.shape[-1])

    def choose(self, name: str, thought: Thought, candidates: Tensor, prior: Tensor) -> Tensor:
        """The (B,) candidate each example reads: sampled with `thought.explore` when an RL trainer set
        it, else the most likely; the choice is kept in `thought.choices`."""
        logp = self(thought.latent, candidates, prior).log_softmax(dim=-1)
        if thought.explore is not None:
            pick = torch.multinomial(logp.detach().exp().cpu(), 1, generator=thought.explore).squeeze(1)
            pick = pick.to(logp.device)
        else:
            pick = logp.argmax(dim=-1)
        entropy = -(logp.exp() * logp).sum(dim=-1)
        thought.choices.append(ReadChoice(name, pick, logp.gather(1, pick[:, None]).squeeze(1), entropy))
        return pick
