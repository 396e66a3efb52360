"""The multistep trainer: one object owns model, optimiser, EMA, data and RNG; `fit` runs updates."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from th1nker.errors import CheckpointError, RecipeError, TrainingDiverged
from th1nker.loop import StepEnd, WindowEnd, think
from th1nker.model import Th1nker
from th1nker.plans import PLANS
from th1nker.recipe import Recipe
from th1nker.schedule import make_schedule
from th1nker.train import checkpoint as ckpt_io
from th1nker.train import distributed, speed
from th1nker.train.device import pick_device
from th1nker.train.clean_memory import MemoryCleaner
from th1nker.train.teacher import Teacher, distill_loss
from th1nker.train.optim import build_ema, build_optimizer, build_scheduler


class TorchRng:
    """The `Rng` a TBPTT plan draws from, backed by a torch generator (one seed drives everything)."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def integer(self, lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=self.generator))

    def uniform(self) -> float:
        return float(torch.rand(1, generator=self.generator))


def check_fits(recipe: Recipe, spec) -> None:
    """Refuse, before allocating anything, a model whose weights and AdamW state (4 copies of every
    parameter, fp32) cannot fit in this machine's free memory. Models far below the limit by a rough
    count skip the exact count (building on the meta device imports torch's compiler: seconds)."""
    free = _available_bytes()
    m = recipe.model
    rough = sum(getattr(b, "layers", 1) * 16 * max(m.dim, getattr(b, "hidden", None) or 0) ** 2
                for b in m.blocks.values()) + 4 * m.dim * (spec.vocab + spec.classes)
    if free is None or 16 * rough < free / 8:
        return
    with torch.device("meta"):
        n = sum(p.numel() for p in Th1nker(recipe, spec).parameters())
    need = 4 * 4 * n
    if need > free:
        raise RecipeError(f"model: {n:,} parameters need {need / 2**30:.1f} GiB for weights and optimiser state, "
                          f"but {free / 2**30:.1f} GiB are free; lower model.dim, the blocks' layers or hidden sizes")


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def init_from_run(model: Th1nker, run: str, recipe: Recipe) -> None:
    """train.init: copy a trained run's weights (EMA when it kept them) into `model`."""
    try:
        loaded = ckpt_io.load_model_weights(model, Path(run), recipe.model_dump(mode="json"))
    except CheckpointError as e:
        raise CheckpointError(f"train.init: {e}") from None
    if loaded is not model:  # the EMA's copy
        model.load_state_dict(loaded.state_dict())


class Trainer:
    """Truncated-backprop multistep training of a Th1nker model on a task."""

    def __init__(self, recipe: Recipe, task, device: torch.device | None = None):
        if recipe.schedule.kind == "policy":
            raise RecipeError("schedule.kind: 'policy' takes its decisions from an outside policy (an RL "
                              "environment); training needs a schedule of its own: fixed, random or probe")
        self.recipe, self.task, self.cfg = recipe, task, recipe.train
        # under torchrun: join the process group; each rank trains on its slice of every global batch
        self.device = distributed.init(self.cfg.distributed.backend, device or pick_device(self.cfg.device))
        check_fits(recipe, task.spec)
        torch.manual_seed(recipe.seed)
        self.model = Th1nker(recipe, task.spec)
        if self.cfg.init:
            init_from_run(self.model, self.cfg.init, recipe)
        self.model.to(self.device)
        self.ema = build_ema(self.model, self.cfg.ema)
        distributed.prepare(self.model, self.ema, recipe)
        self.optimizer = build_optimizer(self.model, self.cfg.optimizer)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.optimizer, self.cfg.max_updates)
        self.generator = torch.Generator().manual_seed(recipe.seed + 1)  # the same on every rank
        self.schedule = make_schedule(recipe.schedule, self.model, self.generator)
        self.update = 0
        self.skipped = 0
        self.skipped_in_a_row = 0  # non-finite updates since the last finite one (per run, this process)
        self.autocast = speed.autocast(self.cfg.precision, self.device)
        if self.cfg.compile:
            speed.compile_blocks(self.model)
        self.teacher = Teacher(self.cfg.teacher, recipe, task, self.device) if self.cfg.teacher else None
        self.cleaner = MemoryCleaner(self.cfg.clean_memory) if self.cfg.clean_memory else None
        self._updates = self._update_stream()

    @property
    def eval_model(self) -> Th1nker:
        return self.ema.module if self.ema is not None else self.model

    def train_update(self) -> dict:
        """One optimiser update: returns its metrics."""
        return next(self._updates)

    def _update_stream(self):
        """Optimiser updates, forever. Each unroll draws one TBPTT plan, shared by its `accumulate`
        micro-batches; every gradient window is backpropagated as soon as it ends. With
        `update_per_window`, update k steps on window k of every micro-batch; otherwise one update
        steps on all windows of all micro-batches."""
        cfg = self.cfg
        while True:
            self.model.train()
            plan = PLANS[cfg.tbptt.mode](cfg.tbptt, self.recipe.schedule.steps, TorchRng(self.generator))
            runs = [self._windows(plan) for _ in range(cfg.accumulate)]
            total, per_step, aux = 0.0, {}, {}
            for windows in zip_longest(*runs):  # window k of every micro-batch (each backpropagated already)
                for w in filter(None, windows):  # kept on the device: one host sync per update, not per window
                    total = total + w.loss.detach().float() / cfg.accumulate
                    per_step.update({k: v.detach().float() for k, v in w.step_losses.items()})
                    for name, v in w.aux.items():
                        aux.setdefault(name, []).append(v.detach().float())
                if cfg.tbptt.update_per_window:
                    yield self._optimizer_step(total, per_step, aux)
                    total, per_step, aux = 0.0, {}, {}
            if not cfg.tbptt.update_per_window:
                yield self._optimizer_step(total, per_step, aux)

    def _windows(self, plan):
        """One micro-batch's unroll: yields each gradient window after backpropagating its loss."""
        batch = distributed.shard_batch(self.task.train_batch(self.cfg.batch_size, self.generator)).to(self.device)
        thought = None
        if self.cleaner is not None:
            batch, thought = self.cleaner.start(self.model, batch, self.generator)
        run = think(self.model, batch, self.schedule, plan=plan, loss_weights=self.cfg.loss_weights,
                    noise=True, generator=self.generator, thought=thought)
        weight = self.teacher.weight(self.update) if self.teacher else 0.0
        guide = self.teacher.step_logits(batch, sum(w.steps for w in plan)) if weight else []
        distill: list[torch.Tensor] = []
        while True:
            with self.autocast:  # entered per event: no context is held while another unroll runs
                event = next(run, None)
            if event is None:
                return
            if isinstance(event, StepEnd) and guide:
                out = event.thought.outputs[-1] if event.thought.outputs else None
                if out is not None and out.logits.requires_grad:  # a step with gradients
                    distill.append(distill_loss(out.logits, guide[event.thought.step - 1], self.cfg.teacher.temperature))
            if isinstance(event, WindowEnd):
                if distill:
                    event.aux["distill"] = torch.stack(distill).mean()
                    event.loss = event.loss + weight * event.aux["distill"]
                    distill = []
                if event.loss.requires_grad:  # a window whose steps all weigh zero has nothing to backpropagate
                    (event.loss / self.cfg.accumulate).backward()
                yield event

    def _optimizer_step(self, total, per_step: dict, aux: dict) -> dict:
        total, per_step, aux = _to_floats((total, per_step, aux))
        aux = {name: sum(v) / len(v) for name, v in aux.items()}
        loss = distributed.sync_gradients(self.model, total)  # mean over ranks: the same step on every rank
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
        return {"loss": loss, "grad_norm": norm, "lr": self.scheduler.get_last_lr()[0], "per_step": per_step,
                **{f"aux_{name}": v for name, v in aux.items()}}

    def fit(self, run_dir: Path, tracker=None, progress=None, extra_state: dict | None = None) -> dict:
        """Train until max_updates (or max_minutes), checkpointing every `checkpoint_every` updates."""
        cfg = self.cfg
        start, last_log, window = time.time(), time.time(), defaultdict(list)
        task_id = progress.add_task("training", total=cfg.max_updates, completed=self.update, loss=float("nan")) if progress else None
        updates_at_log, saved_at = self.update, None
        metrics = {}
        while self.update < cfg.max_updates:
            metrics = self.train_update()
            for k, v in metrics.items():  # loss, and aux_<name> for the auxiliary losses this model has
                if k == "loss" or k.startswith("aux_"):
                    window[k].append(v)
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
                saved_at = self.update
            if cfg.max_minutes and distributed.broadcast_object(time.time() - start > 60 * cfg.max_minutes):
                break  # rank 0's clock decides for every rank
        if saved_at != self.update:
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


def _to_floats(tree):
    """The same nest of dicts and lists with its tensors as floats, in one device-to-host copy."""
    leaves, spec = tree_flatten(tree)
    return tree_unflatten(torch.stack([torch.as_tensor(x).float() for x in leaves]).tolist(), spec)
