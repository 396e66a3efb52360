"""The multistep trainer: one object owns model, optimiser, EMA, data and RNG; `fit` runs updates."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import torch

from th1nker.errors import TrainingDiverged
from th1nker.model import Th1nker
from th1nker.recipe import Recipe
from th1nker.schedule import make_schedule
from th1nker.train import checkpoint as ckpt_io
from th1nker.train import distributed
from th1nker.train.optim import build_ema, build_optimizer, build_scheduler
from th1nker.train.tbptt import unroll


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def aux_loss(model: torch.nn.Module) -> torch.Tensor | float:
    """Auxiliary losses the layers left behind (the MoE balance loss), or 0."""
    try:
        from th1nker.omni.layers import aux_loss as layer_aux
    except ImportError:
        return 0.0
    return layer_aux(model)


class Trainer:
    """Truncated-backprop multistep training of a Th1nker model on a task."""

    def __init__(self, recipe: Recipe, task, device: torch.device | None = None):
        self.recipe, self.task, self.cfg = recipe, task, recipe.train
        # under torchrun: join the process group; each rank trains on its slice of every global batch
        self.device = distributed.init(self.cfg.distributed.backend, device or pick_device(self.cfg.device))
        torch.manual_seed(recipe.seed)
        self.model = Th1nker(recipe, task.spec).to(self.device)
        self.ema = build_ema(self.model, self.cfg.ema)
        distributed.prepare(self.model, self.ema, recipe)
        self.optimizer = build_optimizer(self.model, self.cfg.optimizer)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.optimizer, self.cfg.max_updates)
        self.generator = torch.Generator().manual_seed(recipe.seed + 1)  # the same on every rank
        self.schedule = make_schedule(recipe.schedule, self.model, self.generator)
        self.update = 0
        self.skipped = 0
        self.skipped_in_a_row = 0  # non-finite updates since the last finite one (per run, this process)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                         else nullcontext())

    @property
    def eval_model(self) -> Th1nker:
        return self.ema.module if self.ema is not None else self.model

    def train_update(self) -> dict:
        """One update (several with `update_per_window`): returns its metrics."""
        cfg = self.cfg
        self.model.train()
        per_step: dict[int, float] = {}  # this rank's (rank 0 logs them)
        total, steps, aux = 0.0, [], []  # steps: (grad norm, loss averaged over ranks) per optimiser step
        for _ in range(cfg.accumulate):
            batch = distributed.shard_batch(self.task.train_batch(cfg.batch_size, self.generator)).to(self.device)
            with self.autocast:
                windows = unroll(self.model, batch, self.schedule, cfg, self.recipe.schedule.steps,
                                 self.generator, self.recipe.model.latent.noise)
                for loss, losses in windows:
                    aux.append(torch.as_tensor(aux_loss(self.model)))
                    loss = (loss + cfg.aux_loss_weight * aux[-1]) / cfg.accumulate
                    loss.backward()
                    total += loss.detach().item()
                    per_step.update({k: v.detach().item() for k, v in losses.items()})
                    if cfg.tbptt.update_per_window:
                        steps.append(self._optimizer_step(total))
        if not cfg.tbptt.update_per_window:
            steps.append(self._optimizer_step(total))
        return {"loss": steps[-1][1], "grad_norm": max(n for n, _ in steps), "lr": self.scheduler.get_last_lr()[0],
                "aux_loss": float(torch.stack(aux).detach().mean()), "per_step": per_step}

    def _optimizer_step(self, loss: float) -> tuple[float, float]:
        loss = distributed.sync_gradients(self.model, loss)  # mean over ranks: the same step on every rank
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip or math.inf))
        if not (math.isfinite(norm) and math.isfinite(loss)):
            self.skipped += 1  # NaN/Inf guard: drop this update, keep the weights
            self.skipped_in_a_row += 1
        else:
            self.skipped_in_a_row = 0
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.update += 1
        if self.skipped_in_a_row >= self.cfg.max_skipped:
            raise TrainingDiverged(f"training diverged: updates {self.update - self.skipped_in_a_row + 1}-{self.update} "
                                   f"all had a non-finite loss or gradient (train.max_skipped={self.cfg.max_skipped})")
        return norm, loss

    def fit(self, run_dir: Path, tracker=None, progress=None, extra_state: dict | None = None) -> dict:
        """Train until max_updates (or max_minutes), checkpointing every `checkpoint_every` updates."""
        cfg = self.cfg
        start, last_log, window = time.time(), time.time(), defaultdict(list)
        task_id = progress.add_task("training", total=cfg.max_updates, completed=self.update, loss=float("nan")) if progress else None
        updates_at_log = self.update
        metrics = {}
        while self.update < cfg.max_updates:
            metrics = self.train_update()
            window["loss"].append(metrics["loss"])
            window["aux_loss"].append(metrics["aux_loss"])  # MoE balance: 1 per balanced MoE layer, 0 without
            for k, v in metrics["per_step"].items():
                window[f"loss_step_{k + 1:03d}"].append(v)
            if progress:
                progress.update(task_id, completed=self.update, loss=metrics["loss"])
            if self.update % cfg.log_every == 0 or self.update >= cfg.max_updates:
                now = time.time()
                logged = {k: sum(v) / len(v) for k, v in window.items()}
                logged.update(lr=metrics["lr"], grad_norm=metrics["grad_norm"], skipped_updates=self.skipped,
                              updates_per_s=(self.update - updates_at_log) / max(now - last_log, 1e-9))
                if tracker:
                    tracker.metrics(logged, step=self.update)
                window.clear()
                last_log, updates_at_log = now, self.update
            if self.update % cfg.checkpoint_every == 0:
                self.save(run_dir, extra_state or {})
            if cfg.max_minutes and distributed.broadcast_object(time.time() - start > 60 * cfg.max_minutes):
                break  # rank 0's clock decides for every rank
        self.save(run_dir, extra_state or {})
        return {"updates": self.update, "skipped_updates": self.skipped, "final_loss": metrics.get("loss"),
                "minutes": (time.time() - start) / 60}

    def save(self, run_dir: Path, extra: dict) -> Path:
        """Checkpoint: under torchrun every rank gathers, rank 0 writes, all return once it is on disk."""
        path = ckpt_io.save_checkpoint(run_dir, self.update, self.model, self.ema, self.optimizer, self.scheduler,
                                       self.generator, self.recipe.model_dump(mode="json"),
                                       {"skipped": self.skipped, **extra})
        distributed.barrier()
        return path

    def load(self, path: Path) -> dict:
        """Restore everything from a checkpoint for an exact resume; returns its state.json."""
        ckpt = ckpt_io.find_checkpoint(path)
        state = ckpt_io.load_state(ckpt)
        recipe = self.recipe.model_dump(mode="json")
        ckpt_io.load_weights(self.model, ckpt / "model.safetensors", state, recipe)
        if self.ema is not None:
            ckpt_io.load_weights(self.ema, ckpt / "ema.safetensors", state, recipe)
        ckpt_io.load_trainer_state(ckpt, self.optimizer, self.scheduler, self.generator, state)
        self.update, self.skipped = state["update"], state.get("skipped", 0)
        return state
