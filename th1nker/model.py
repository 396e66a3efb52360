"""Model assembly: encoders, one module per named block instance, latent initialisation, `think`."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor, nn

from th1nker.blocks.base import BuildContext
from th1nker.encoders import build_encoders
from th1nker.errors import RecipeError
from th1nker.graph import BlockGraph
from th1nker.memory import LatentStore
from th1nker.recipe import Recipe
from th1nker.registry import block_class
from th1nker.schedule import Schedule, make_schedule
from th1nker.tasks.base import Batch, TaskSpec
from th1nker.thought import Source, Thought


class Th1nker(nn.Module):
    """A latent-step model assembled from a recipe.

    One module per block instance name: a name used in several places shares its weights.
    `think(batch, schedule, steps)` runs the thinking loop and returns the Thought.
    """

    def __init__(self, recipe: Recipe, spec: TaskSpec):
        super().__init__()
        self.recipe, self.spec = recipe, spec
        self.graph = BlockGraph(recipe)
        m = recipe.model
        self.dim = m.dim
        slots = m.latent.slots if isinstance(m.latent.slots, int) else None
        self.encoders = build_encoders(m, spec.vocab)
        self.blocks = nn.ModuleDict({
            name: block_class(cfg.kind)(cfg, BuildContext(name, m.dim, spec, self.graph.actions, slots))
            for name, cfg in m.blocks.items()
        })
        for name, block in self.blocks.items():
            needs = getattr(block, "modality", None)
            if needs and needs not in self.encoders:
                raise RecipeError(f"model.blocks.{name} reads '{needs}': declare model.encoders.{needs}")
        if m.latent.init == "learned":
            self.latent0 = nn.Parameter(torch.randn(slots or 1, m.dim) * m.latent.scale)

    # -- the pieces of one run ----------------------------------------------------------------
    def encode(self, batch: Batch) -> dict[str, Source]:
        return {k: self.encoders[k](v, batch.masks.get(k), batch.grid)
                for k, v in batch.inputs.items() if k in self.encoders}

    def init_latent(self, b: int, length: int, device, generator: torch.Generator | None = None) -> Tensor:
        lat = self.recipe.model.latent
        if lat.init == "learned":
            return self.latent0.expand(b, length, -1) if self.latent0.shape[0] == 1 else self.latent0.expand(b, -1, -1)
        if lat.init == "fixed":
            g = torch.Generator().manual_seed(self.recipe.seed)
            return (torch.randn(length, self.dim, generator=g) * lat.scale).to(device).expand(b, -1, -1)
        noise = torch.randn(b, length, self.dim, generator=generator, device="cpu" if generator else device)
        return (noise * lat.scale).to(device)

    def start(self, batch: Batch, generator: torch.Generator | None = None,
              store: LatentStore | None = None) -> Thought:
        """Encode the inputs and draw the initial latent; a batch's "memory" input is its long-term memory."""
        inputs = self.encode(batch)
        slots = self.recipe.model.latent.slots
        length = next(iter(inputs.values())).tokens.shape[1] if slots == "input" else slots
        device = next(self.parameters()).device
        latent = self.init_latent(len(batch), length, device, generator)
        grid = batch.grid if slots == "input" else None
        if store is None:  # keep step latents only when some block reads them
            mem = self.recipe.model.memory
            store = LatentStore(mem.capacity, mem.grad_steps) if self.reads_store else LatentStore(capacity=0)
        return Thought(latent, inputs, store, longterm=batch.inputs.get("memory"), grid=grid)

    def run_block(self, name: str, thought: Thought, rows: Tensor | None = None) -> Thought:
        """Run one block; with `rows` (B,) bool only those examples are updated and charged."""
        block = self.blocks[name]
        if rows is None:
            thought = block(thought)
            thought.cost = thought.cost + block.cost
        else:
            old, n_out = thought.latent, len(thought.outputs)
            thought = block(thought)
            thought.latent = torch.where(rows[:, None, None], thought.latent, old)
            for out in thought.outputs[n_out:]:
                out.rows = rows
            thought.cost = thought.cost + block.cost * rows
        thought.trace.append(name)
        return thought

    def step(self, thought: Thought, schedule: Schedule) -> Thought:
        """One thinking step: the schedule's blocks, then the latent goes to the store."""
        thought = schedule.run_step(self, thought)
        thought.store.append(thought.latent, thought.step)
        thought.step += 1
        return thought

    def think(self, batch: Batch, schedule: Schedule | None = None, steps: int | None = None,
              generator: torch.Generator | None = None) -> Thought:
        """Run `steps` thinking steps (default: the recipe's) with `schedule` (default: the recipe's)."""
        schedule = schedule or make_schedule(self.recipe.schedule, self, generator)
        thought = self.start(batch, generator)
        for _ in range(steps or self.recipe.schedule.steps):
            thought = self.step(thought, schedule)
            if bool(thought.halted.all()):
                break
        return thought

    # -- reading results ----------------------------------------------------------------------
    def prediction(self, thought: Thought, step: int | None = None) -> Tensor | None:
        """Each example's latest prediction up to `step` (default: all steps), or None if none yet."""
        pred = None
        for out in thought.outputs:
            if step is not None and out.step > step:
                break
            p = self.blocks[out.block].predict(out.logits)
            keep_old = pred is not None and out.rows is not None
            pred = torch.where(_expand(out.rows, p), p, pred) if keep_old else p
        return pred

    @cached_property
    def reads_store(self) -> bool:
        from th1nker.blocks import ReadLatentLayer

        return any(isinstance(b, ReadLatentLayer) for b in self.blocks.values())

    @cached_property
    def _masks(self) -> tuple[Tensor, Tensor]:
        g = self.graph
        rows = [g.mask(a) for a in g.actions] + [torch.zeros(len(g.actions) + 1, dtype=torch.bool), g.mask(None)]
        start = torch.tensor([a in g.start for a in g.actions])
        return torch.stack(rows), start

    def distance_to_end(self) -> Tensor:
        """(A,) fewest blocks from each action to the end of a step (inf where none)."""
        dist = self.graph.distance_to_end()
        return torch.tensor([float(dist.get(a, float("inf"))) for a in self.graph.actions],
                            device=next(self.parameters()).device)

    def mask_table(self) -> Tensor:
        """(A + 2, A + 1) bool: row = last action (A = halted, A + 1 = none yet), column = allowed next."""
        return self._masks[0].to(next(self.parameters()).device)

    def start_mask(self) -> Tensor:
        return self._masks[1].to(next(self.parameters()).device)


def _expand(rows: Tensor, like: Tensor) -> Tensor:
    return rows.view(-1, *([1] * (like.dim() - 1)))
