"""A batch of block-choice episodes run together: one masked batch update of the model per decision."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor

from th1nker.blocks import Probe
from th1nker.errors import RecipeError
from th1nker.recipe import RLConfig
from th1nker.rl.reward import episode_reward


class BlockChoiceVecEnv:
    """`n` episodes of thinking, each on one example of one difficulty, with a frozen model.

    An action is the next block (an index into `model.graph.actions`) or stop (`len(actions)`), legal as
    in the probe schedule: a step starts at a start block, follows the graph's edges, ends at an end block
    within `schedule.max_len` blocks, and stopping is allowed right after an end block. An episode ends
    when it stops (terminated), takes an illegal action (terminated, scored as wrong), or reaches
    `schedule.steps` steps or `rl.max_blocks` blocks (truncated). Its reward, given when it ends, trades
    the correctness of its latest answer against its compute (see `episode_reward`).

    `reset(seed, options={"batch": Batch})` starts all episodes (on `batch`, or on examples of a random
    training difficulty); `step(actions)` returns numpy (obs, reward, terminated, truncated, info) for
    all, `advance(actions)` only rewards and ends, as tensors; finished episodes ignore their action
    and get reward 0. Episodes that chose the same block run it together as a masked update of the
    batch (`Th1nker.run_block(rows=...)`).
    """

    def __init__(self, model, task, n: int, config: RLConfig | None = None,
                 difficulties: list[int] | None = None):
        recipe, graph = model.recipe, model.graph
        if n > 1 and (model.reads_store or any(getattr(b.config, "stream", None) for b in model.blocks.values())):
            raise RecipeError("model.blocks: episodes in one batch end their thinking steps at different times, "
                              "but read_latent blocks and streamed reads follow the batch's step counter; "
                              "run such a recipe one episode at a time (BlockChoiceEnv)")
        self.model, self.task, self.n = model.eval(), task, n
        self.config = config or recipe.rl or RLConfig()
        sched = recipe.schedule
        self.n_actions = len(graph.actions)
        self.max_len, self.max_steps = sched.max_len, sched.steps
        self.max_blocks = self.config.max_blocks or sched.steps * max(sched.max_len, len(sched.step))
        self.difficulties = difficulties or list(range(recipe.task.train[0], recipe.task.train[1] + 1))
        self.probe = sched.probe or next((k for k, b in model.blocks.items() if isinstance(b, Probe)), None)
        # the recipe's probe schedule consults the probe at every decision: charge it as that schedule does
        self.decision_cost = model.blocks[sched.probe].cost if sched.kind == "probe" else 0.0
        self.fixed_cost = sched.steps * sum(model.blocks[b].cost for b in sched.step)
        self.device = next(model.parameters()).device
        self.table, self.start_mask = model.mask_table(), model.start_mask()
        self.to_end = model.distance_to_end()
        self.is_end = torch.tensor([a in graph.end for a in graph.actions], device=self.device)
        size = 3 + (self.n_actions + 1) * (2 if self.probe else 1)
        bound = model.dim**0.5  # an RMS-normalised vector has no entry beyond sqrt(dim)
        self.observation_space = spaces.Box(  # one episode's
            np.concatenate([np.full(2 * model.dim, -bound), np.zeros(size)]).astype(np.float32),
            np.concatenate([np.full(2 * model.dim, bound), np.ones(size)]).astype(np.float32))
        self.action_space = spaces.Discrete(self.n_actions + 1)
        self.generator = torch.Generator()

    # -- the episode state --------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None):
        """Start `n` episodes; `options["batch"]` gives their examples (default: a random training difficulty)."""
        if seed is not None:
            self.generator.manual_seed(seed)
        batch = (options or {}).get("batch")
        if batch is None:
            d = self.difficulties[int(torch.randint(len(self.difficulties), (1,), generator=self.generator))]
            batch = self.task.batch(self.n, d, self.generator)
        if len(batch) != self.n:
            raise ValueError(f"options['batch'] has {len(batch)} examples; this env runs {self.n} episodes")
        self.model.eval()
        self.batch = batch.to(self.device)
        with torch.no_grad():
            self.thought = self.model.start(self.batch, self.generator)
        zeros = torch.zeros(self.n, dtype=torch.long, device=self.device)
        self.last = torch.full_like(zeros, self.n_actions + 1)  # last block run; n_actions + 1 = none yet
        self.pos, self.blocks, self.steps = zeros.clone(), zeros.clone(), zeros.clone()
        self.done = torch.zeros(self.n, dtype=torch.bool, device=self.device)
        self.correct = self.done.clone()
        self.answered, self.pred = self.done.clone(), None
        self.confidence = torch.zeros(self.n, device=self.device)
        return self.observe(), self._info(self.done, self.done)

    def mask(self) -> Tensor:
        """(n, n_actions + 1) bool: the legal actions of each episode (none once it has ended)."""
        m = self.table[self.last].clone()
        first = (self.pos == 0)[:, None]
        m[:, : self.n_actions] &= ~first | self.start_mask
        m[:, : self.n_actions] &= self.to_end <= (self.max_len - self.pos)[:, None]
        return m & ~self.done[:, None]

    def action_masks(self) -> np.ndarray:
        return self.mask().cpu().numpy()

    def step(self, actions):
        """Gymnasium-style: numpy (obs, reward, terminated, truncated, info), one entry per episode."""
        a = torch.as_tensor(actions if isinstance(actions, Tensor) else np.asarray(actions), dtype=torch.long)
        reward, terminated, truncated, illegal = self.advance(a.to(self.device).view(self.n))
        return (self.observe(), reward.cpu().numpy(), terminated.cpu().numpy(), truncated.cpu().numpy(),
                self._info(terminated | truncated, illegal))

    @torch.no_grad()
    def advance(self, a: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Take action `a[i]` in episode i: (reward, terminated, truncated, illegal), each (n,)."""
        live, mask = ~self.done, self.mask()
        legal = mask.gather(1, a.clamp(0, self.n_actions)[:, None]).squeeze(1) & (a >= 0) & (a <= self.n_actions)
        illegal = live & ~legal
        self.thought.cost = self.thought.cost + self.decision_cost * live
        run = live & legal & (a < self.n_actions)
        for b in a[run].unique().tolist():
            rows = run & (a == b)
            n_out = len(self.thought.outputs)
            self.thought = self.model.run_block(self.model.graph.actions[b], self.thought, rows=rows)
            self._record(self.thought.outputs[n_out:])
            self.last = torch.where(rows, b, self.last)
        ended = run & self.is_end[a.clamp(0, self.n_actions - 1)]
        self.blocks += run
        self.steps += ended
        self.pos = torch.where(ended, 0, self.pos + run.long())
        if bool(ended.any()):  # per-episode steps; with n > 1 no block reads the batch's counter (see __init__)
            self.thought.store.append(self.thought.latent, self.thought.step)
            self.thought.step += 1
        terminated = live & ((a == self.n_actions) | illegal)
        truncated = live & ~terminated & ((self.steps >= self.max_steps) | (self.blocks >= self.max_blocks))
        terminated |= live & ~truncated & ~self.mask().any(1)  # a dead end of the graph
        finished = terminated | truncated
        self.done |= finished
        self.correct = torch.where(finished, self._score() & ~illegal, self.correct)
        reward = torch.where(finished, episode_reward(self.config, self.correct, self.compute()), 0.0)
        return reward, terminated, truncated, illegal

    # -- what an episode shows ----------------------------------------------------------------
    def compute(self) -> Tensor:
        """(n,) compute spent so far, as a fraction of the fixed schedule's compute."""
        return self.thought.cost / self.fixed_cost

    @torch.no_grad()
    def observe(self) -> np.ndarray:
        """(n, size) float32: mean- and max-pooled normalised latent, budget used (blocks, steps), the
        confidence of the latest answer, the last block (one-hot, last = none yet) and the probe's choice
        probabilities (unmasked)."""
        latent = self.thought.latent.float()
        h = F.rms_norm(latent, (latent.shape[-1],))
        last = F.one_hot(self.last.clamp(max=self.n_actions), self.n_actions + 1).float()
        parts = [h.mean(1), h.amax(1), (self.blocks / self.max_blocks)[:, None], (self.steps / self.max_steps)[:, None],
                 self.confidence[:, None], last]
        if self.probe:
            parts.append(self.model.blocks[self.probe].logits(self.thought.latent).float().softmax(-1))
        return torch.cat(parts, dim=1).cpu().numpy()

    def _record(self, outputs) -> None:
        """Keep each episode's latest prediction and its confidence (lowest top probability over positions)."""
        for out in outputs:
            head = self.model.blocks[out.block]
            rows = out.rows if out.rows is not None else torch.ones_like(self.done)
            pred = head.predict(out.logits)
            conf = out.logits.float().softmax(-1).amax(-1).reshape(self.n, -1).amin(1)
            self.pred = pred if self.pred is None else torch.where(rows.view(-1, *[1] * (pred.dim() - 1)), pred, self.pred)
            self.confidence = torch.where(rows, conf, self.confidence)
            self.answered |= rows

    def _score(self) -> Tensor:
        if self.pred is None:
            return torch.zeros_like(self.done)
        return self.answered & self.task.score(self.pred, self.batch).to(self.device)

    def _info(self, finished: Tensor, illegal: Tensor) -> dict:
        return {"illegal": illegal.cpu().numpy(), "difficulty": np.full(self.n, self.batch.difficulty or 0), "correct": self.correct.cpu().numpy(),
                "compute": self.compute().cpu().numpy(), "blocks": self.blocks.cpu().numpy(),
                "steps": self.steps.cpu().numpy(), "finished": finished.cpu().numpy()}
