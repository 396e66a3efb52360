"""Kickstarting (DeepMind AdA): a trained teacher's per-step answers guide a student, with a weight that
decays to 0, so a new (bigger, differently shaped) model starts from what a smaller one learned."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from th1nker.errors import RecipeError
from th1nker.events import StepEnd
from th1nker.loop import think


class Teacher:
    """A frozen model from a run folder of `th1nker train`, thinking on the student's batches."""

    def __init__(self, config, recipe, task, device: torch.device):
        from th1nker.train.evaluate import load_model

        run = Path(config.run)
        if not (run / "recipe.yaml").is_file():
            raise RecipeError(f"train.teacher.run: {run} is not a run folder of `th1nker train` (no recipe.yaml)")
        _, teacher_task, model = load_model(run / "recipe.yaml", run, [])
        if (teacher_task.spec.vocab, teacher_task.spec.classes) != (task.spec.vocab, task.spec.classes):
            raise RecipeError(f"train.teacher.run: {run} was trained on another task (vocab, classes "
                              f"{teacher_task.spec.vocab, teacher_task.spec.classes} vs {task.spec.vocab, task.spec.classes})")
        self.config, self.model = config, model.to(device).eval().requires_grad_(False)
        self.generator = torch.Generator().manual_seed(recipe.seed + 3)  # its own: the student's draws stay as they were
        self.decay = config.decay_updates or recipe.train.max_updates // 2

    def weight(self, update: int) -> float:
        """The distillation weight at `update`: linear from `config.weight` down to 0 at `decay_updates`."""
        return self.config.weight * max(0.0, 1.0 - update / max(self.decay, 1))

    @torch.no_grad()
    def step_logits(self, batch, steps: int) -> list[Tensor]:
        """The teacher's answer after each of `steps` thinking steps."""
        out = []
        for event in think(self.model, batch, steps=steps, generator=self.generator):
            if isinstance(event, StepEnd):
                thought = event.thought
                out.append(thought.latest[thought.last_block].logits)
        return out


def distill_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) over the classes, averaged over examples and positions."""
    if student.shape != teacher.shape:
        raise RecipeError(f"train.teacher: the teacher answers in shape {tuple(teacher.shape)}, the student in "
                          f"{tuple(student.shape)}; kickstart from a model with the same output block")
    s = (student.float() / temperature).log_softmax(-1)
    t = (teacher.float() / temperature).log_softmax(-1)
    return (t.exp() * (t - s)).sum(-1).mean() * temperature**2
