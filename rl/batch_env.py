"""A batch of block-choice episodes run together: one masked batch update of the model per decision."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor

from th1nker.blocks import Probe
from th1nker.loop import Decide, think
from th1nker.recipe import RLConfig
from th1nker.rl.reward import episode_reward
from th1nker.schedule import PolicySchedule


class BlockChoiceVecEnv:
    """`n` episodes of thinking, each on one example of one difficulty, with a frozen model.

    The episodes are one run of the thinking loop (`th1nker.loop.think`) under a policy schedule whose
    decisions come from `step`/`advance`. An action is the next block (an index into
    `model.graph.actions`) or stop (`len(actions)`), legal as in the probe schedule: a step starts at a
    start block, follows the graph's edges, ends at an end block within `schedule.max_len` blocks, and
    stopping is allowed right after an end block. Episodes keep the loop's step boundaries: one that
    has ended its step waits (its action is ignored, reward 0) until every episode has ended it, so
    each episode sees exactly what it would see alone. An episode ends when it stops (terminated),
    takes an illegal action (terminated, scored as wrong), or reaches `schedule.steps` steps or
    `rl.max_blocks` blocks (truncated). Its reward, given when it ends, trades the correctness of its
    latest answer against its compute (see `episode_reward`).

    `reset(seed, options={"batch": Batch})` starts all episodes (on `batch`, or on examples of a random
    training difficulty); `step(actions)` returns numpy (obs, reward, terminated, truncated, info) for
    all, `advance(actions)` only rewards and ends, as tensors; finished and waiting episodes ignore
    their action and get reward 0.
    """

    def __init__(self, model, task, n: int, config: RLConfig | None = None,
                 difficulties: list[int] | None = None):
        recipe, graph = model.recipe, model.graph
        self.model, self.task, self.n = model.eval(), task, n
        self.config = config or recipe.rl or RLConfig()
        sched = recipe.schedule
        self.n_actions = len(graph.actions)
        self.max_len, self.max_steps = sched.max_len, sched.steps
        self.max_blocks = self.config.max_blocks or sched.steps * max(sched.max_len, len(sched.blocks()))
        self.difficulties = difficulties or self.config.difficulties or list(range(recipe.task.train[0], recipe.task.train[1] + 1))
        self.probe = sched.probe or next((k for k, b in model.blocks.items() if isinstance(b, Probe)), None)
        # the recipe's probe schedule consults the probe at every decision: charge it as that schedule does
        self.decision_cost = model.blocks[sched.probe].cost if sched.kind == "probe" else 0.0
        self.fixed_cost = sched.steps * sum(model.blocks[b].cost for b in sched.blocks())
        self.device = next(model.parameters()).device
        self.is_end = torch.tensor([a in graph.end for a in graph.actions], device=self.device)
        self.is_output = torch.tensor([model.blocks[a].config.role == "output" for a in graph.actions], device=self.device)
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
        zeros = torch.zeros(self.n, dtype=torch.long, device=self.device)
        self.last = torch.full_like(zeros, self.n_actions + 1)  # last block run; n_actions + 1 = none yet
        self.blocks, self.steps = zeros.clone(), zeros.clone()
        self.done = torch.zeros(self.n, dtype=torch.bool, device=self.device)
        self.ended_step = self.done.clone()  # ran an end block in the step in progress
        self.correct = self.done.clone()
        self.answered, self.pred = self.done.clone(), None
        self.confidence = torch.zeros(self.n, device=self.device)
        self.final_cost = torch.zeros(self.n, device=self.device)
        schedule = PolicySchedule(None, self.max_len, self.decision_cost)
        with torch.no_grad():
            self.run = think(self.model, self.batch, schedule, self.max_steps, generator=self.generator)
            self._next(None)
        return self.observe(), self._info(self.done, self.done)

    def _next(self, actions: Tensor | None) -> None:
        """Run the loop on to its next decision (or its end): `self.event`, None once it has ended."""
        try:
            event = self.run.send(actions) if actions is not None else next(self.run)
            while not isinstance(event, Decide):
                event = next(self.run)
            self.event, self.thought = event, event.thought
        except StopIteration as end:
            self.event, self.thought = None, end.value

    def asked(self) -> Tensor:
        """(n,) bool: the live episodes whose next block the loop is waiting for."""
        if self.event is None:
            return torch.zeros_like(self.done)
        return self.event.rows & ~self.done

    def mask(self) -> Tensor:
        """(n, n_actions + 1) bool: the legal actions of each episode (none when it waits or has ended)."""
        if self.event is None:
            return torch.zeros(self.n, self.n_actions + 1, dtype=torch.bool, device=self.device)
        return self.event.mask & self.asked()[:, None]

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
        asked, mask = self.asked(), self.mask()
        legal = mask.gather(1, a.clamp(0, self.n_actions)[:, None]).squeeze(1) & (a >= 0) & (a <= self.n_actions)
        illegal = asked & ~legal
        run = asked & legal & (a < self.n_actions)
        position = self.event.position if self.event is not None else 0
        # the loop runs the legal choices; an episode that has ended (or just broke a rule) stops there
        stop = torch.full_like(a, self.n_actions)
        self._next(torch.where(asked & legal, a, stop) if self.event is not None else None)
        ended = run & self.is_end[a.clamp(0, self.n_actions - 1)]
        self.blocks += run
        self.steps += ended
        self.last = torch.where(run, a, self.last)
        self.ended_step = torch.where(torch.full_like(run, position == 0), ended, self.ended_step | ended)
        self._record(run & self.is_output[a.clamp(0, self.n_actions - 1)], a)
        live = ~self.done
        terminated = live & ((asked & (a == self.n_actions)) | illegal)
        truncated = live & ~terminated & ((self.steps >= self.max_steps) | (self.blocks >= self.max_blocks)
                                          | torch.full_like(live, self.event is None))
        waiting = self.ended_step & (self.event is not None and self.event.position > 0)
        terminated |= live & ~truncated & ~self.asked() & ~waiting  # a dead end of the graph
        finished = terminated | truncated
        self.done |= finished
        self.final_cost = torch.where(finished, self.thought.cost, self.final_cost)
        self.correct = torch.where(finished, self._score() & ~illegal, self.correct)
        reward = torch.where(finished, episode_reward(self.config, self.correct, self.compute()), 0.0)
        return reward, terminated, truncated, illegal

    # -- what an episode shows ----------------------------------------------------------------
    def compute(self) -> Tensor:
        """(n,) compute spent so far (until it ended), as a fraction of the fixed schedule's compute."""
        return torch.where(self.done, self.final_cost, self.thought.cost) / self.fixed_cost

    @torch.no_grad()
    def observe(self) -> np.ndarray:
        """(n, size) float32: mean- and max-pooled normalised latent, budget used (blocks, steps), the
        confidence of the latest answer, the last block (one-hot, last = none yet) and the probe's choice
        probabilities (unmasked)."""
        latent = self.thought.states[self.model.default_state].float()
        h = F.rms_norm(latent, (latent.shape[-1],))
        last = F.one_hot(self.last.clamp(max=self.n_actions), self.n_actions + 1).float()
        parts = [h.mean(1), h.amax(1), (self.blocks / self.max_blocks)[:, None], (self.steps / self.max_steps)[:, None],
                 self.confidence[:, None], last]
        if self.probe:
            parts.append(self.model.blocks[self.probe].logits(latent).float().softmax(-1))
        return torch.cat(parts, dim=1).cpu().numpy()

    def _record(self, rows: Tensor, actions: Tensor) -> None:
        """Keep the latest prediction of the episodes in `rows` (they just ran an output block) and its
        confidence (lowest top probability over positions)."""
        for a in actions[rows].unique().tolist():
            out = self.thought.latest[self.model.graph.actions[a]]
            ran = rows & (actions == a)
            pred = self.model.blocks[out.block].predict(out.logits)
            conf = out.logits.float().softmax(-1).amax(-1).reshape(self.n, -1).amin(1)
            self.pred = pred if self.pred is None else torch.where(ran.view(-1, *[1] * (pred.dim() - 1)), pred, self.pred)
            self.confidence = torch.where(ran, conf, self.confidence)
            self.answered |= ran

    def _score(self) -> Tensor:
        if self.pred is None:
            return torch.zeros_like(self.done)
        return self.answered & self.task.score(self.pred, self.batch).to(self.device)

    def _info(self, finished: Tensor, illegal: Tensor) -> dict:
        return {"illegal": illegal.cpu().numpy(), "difficulty": np.full(self.n, self.batch.difficulty or 0), "correct": self.correct.cpu().numpy(),
                "compute": self.compute().cpu().numpy(), "blocks": self.blocks.cpu().numpy(),
                "steps": self.steps.cpu().numpy(), "finished": finished.cpu().numpy()}
