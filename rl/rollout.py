"""Playing a batch of episodes with the probe as the policy (sampled for training, greedy to evaluate)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from th1nker.rl.batch_env import BlockChoiceVecEnv


@dataclass
class Episodes:
    """What a batch of episodes did, one entry per episode."""

    reward: Tensor     # return
    log_prob: Tensor   # sum of the log-probabilities of the actions taken (differentiable when sampled)
    entropy: Tensor    # mean entropy of the policy over the episode's decisions
    correct: Tensor    # bool: the latest answer was right
    compute: Tensor    # compute spent, as a fraction of the fixed schedule's
    steps: Tensor      # thinking steps completed
    blocks: Tensor     # blocks run


def play(env: BlockChoiceVecEnv, probe, greedy: bool, generator: torch.Generator | None = None) -> Episodes:
    """Play every episode of a freshly reset `env` to its end, choosing from the probe's masked logits."""
    n, device = env.n, env.device
    reward, log_prob, entropy, decisions = (torch.zeros(n, device=device) for _ in range(4))
    while not bool(env.done.all()):
        live = env.asked()  # the episodes choosing now (the others have ended, or wait for the step's end)
        allowed = env.mask() | ~live[:, None]  # the others may pick anything; the env ignores it
        logp = probe.logits(env.thought.latent).float().masked_fill(~allowed, float("-inf")).log_softmax(-1)
        if greedy:
            action = logp.argmax(-1)
        else:
            action = torch.multinomial(logp.exp().cpu(), 1, generator=generator).squeeze(1).to(device)
        log_prob = log_prob + torch.where(live, logp.gather(1, action[:, None]).squeeze(1), 0.0)
        entropy = entropy + torch.where(live, -(logp.exp() * logp.masked_fill(~allowed, 0.0)).sum(-1), 0.0)
        decisions = decisions + live
        reward = reward + env.advance(action)[0]
    return Episodes(reward, log_prob, entropy / decisions.clamp_min(1), env.correct.clone(), env.compute(),
                    env.steps.clone(), env.blocks.clone())
