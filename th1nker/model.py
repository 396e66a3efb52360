"""Model assembly: encoders, one module per named block instance, the states' initialisation, and the
pieces the thinking loop (`th1nker.loop`) is made of: start a run, run a call, take a step's loss."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor, nn

from th1nker.blocks.base import BuildContext
from th1nker.encoders import ENCODED_AS, build_encoders
from th1nker.errors import DataError, RecipeError
from th1nker.graph import BlockGraph
from th1nker.memory import LatentStore
from th1nker.recipe import INPUT, CallConfig, Recipe, as_call
from th1nker.registry import block_class
from th1nker.tasks.base import Batch, TaskSpec
from th1nker.thought import Source, Thought


class Th1nker(nn.Module):
    """A latent-step model assembled from a recipe.

    One module per block instance name: a name called at several sites shares its weights. The
    thinking loop (`th1nker.loop.think`) runs it; `think` here runs it to the end and returns the Thought.
    """

    def __init__(self, recipe: Recipe, spec: TaskSpec):
        super().__init__()
        self.recipe, self.spec = recipe, spec
        self.graph = BlockGraph(recipe)
        m = recipe.model
        self.dim = m.dim
        self.default_state = m.default_state
        self.encoders = build_encoders(m, spec.vocab)
        self.blocks = nn.ModuleDict({
            name: block_class(cfg.kind)(cfg, BuildContext(name, m.dim, spec, self.graph.actions, self._slots_of(name),
                                                          recipe.train.aux_loss_weight))
            for name, cfg in m.blocks.items()
        })
        for name, block in self.blocks.items():
            needs = getattr(block, "modality", None)
            if needs and needs not in self.encoders:
                raise RecipeError(f"model.blocks.{name} reads '{needs}': declare model.encoders.{needs}")
        self.learned_states = nn.ParameterDict({
            name: nn.Parameter(torch.randn(s.slots if isinstance(s.slots, int) else 1, m.dim) * s.scale)
            for name, s in m.states.items() if s.init == "learned"})
        self._fused_steps: dict = {}  # FusedStep per step, built at a compiled generation's first one-token step
        self._last_fused: tuple = (None, None)
        self._fixed_starts: dict[tuple, Tensor] = {}  # `init: fixed` states per (name, length, device)

    def _slots_of(self, block: str) -> int | None:
        """The fixed length of the states `block` is called on (None when one follows the input)."""
        calls = [c for c in self.calls if c.block == block] or [as_call(block, self.default_state)]
        slots = {self.recipe.model.states[s].slots for c in calls for s in (c.read, c.write)}
        return slots.pop() if len(slots) == 1 and isinstance(next(iter(slots)), int) else None

    @cached_property
    def q_halting(self) -> bool:
        """Whether an output block has a Q-learning halting head (the loop then bootstraps its targets)."""
        return any(getattr(b.config, "halt", False) and getattr(b.config, "halt_mode", "bce") == "q"
                   for b in self.blocks.values())

    @cached_property
    def calls(self) -> list[CallConfig]:
        """The recipe's step as resolved calls (read and write filled in)."""
        return [as_call(e, self.default_state) for e in self.recipe.schedule.step]

    # -- starting a run -----------------------------------------------------------------------
    def encode(self, batch: Batch) -> dict[str, Source]:
        return {k: self.encoders[ENCODED_AS.get(k, k)](v, batch.masks.get(k), batch.grid)
                for k, v in batch.inputs.items() if ENCODED_AS.get(k, k) in self.encoders}

    def init_state(self, name: str, b: int, length: int, device, generator: torch.Generator | None = None) -> Tensor:
        """A state's initial value: learned, a fixed random buffer (its own per state), or random per sample."""
        cfg = self.recipe.model.states[name]
        if cfg.init == "learned":
            p = self.learned_states[name]
            return p.expand(b, length, -1) if p.shape[0] == 1 else p.expand(b, -1, -1)
        if cfg.init == "fixed":
            key = (name, length, device)
            if key not in self._fixed_starts:  # drawn once: a run per generated token would redraw it
                g = torch.Generator().manual_seed(self.recipe.seed + list(self.recipe.model.states).index(name))
                self._fixed_starts[key] = (torch.randn(length, self.dim, generator=g) * cfg.scale).to(device)
            return self._fixed_starts[key].expand(b, -1, -1)
        noise = torch.randn(b, length, self.dim, generator=generator, device="cpu" if generator else device)
        return (noise * cfg.scale).to(device)

    def start(self, batch: Batch, generator: torch.Generator | None = None,
              store: LatentStore | None = None) -> Thought:
        """Encode the inputs and draw every state; a batch's "memory" input is its long-term memory."""
        inputs = self.encode(batch)
        input_len = next(iter(inputs.values())).tokens.shape[1] if inputs else None
        device = next(self.parameters()).device
        states, grids = {}, {}
        for name, cfg in self.recipe.model.states.items():
            if cfg.slots == "input" and input_len is None:
                raise DataError(f"model.states.{name}.slots: 'input' needs an encoded input; this batch has none")
            length = input_len if cfg.slots == "input" else cfg.slots
            states[name] = self.init_state(name, len(batch), length, device, generator)
            grids[name] = batch.grid if cfg.slots == "input" else None
        if store is None:  # keep step latents only when some block reads them
            mem = self.recipe.model.memory
            store = LatentStore(mem.capacity, mem.grad_steps) if self.reads_store else LatentStore(capacity=0)
        return Thought(states, inputs, store, longterm=batch.inputs.get("memory"), focus=self.default_state,
                       grids=grids)

    # -- one call -----------------------------------------------------------------------------
    def run_call(self, call: CallConfig | str, thought: Thought, rows: Tensor | None = None,
                 index: Tensor | None = None) -> Thought:
        """Run one call site (`repeat` times): the block reads `call.read` plus `call.add`, and its result
        replaces `call.write`. With `rows` (B,) bool, or the `index` of those rows, the block runs on
        those examples only (gathered, then scattered back): the others cost nothing. Finding the rows
        of a bool mask is one host sync per call; an index costs none."""
        call = as_call(call, self.default_state) if isinstance(call, str) else call
        if rows is None and index is None:
            return self._run(call, thought)
        if index is None:
            index = rows.nonzero().squeeze(1)
        if len(index) == len(thought.cost):
            return self._run(call, thought)
        if len(index):
            thought.merge(self._run(call, thought.select(index)), index, call.write)
        return thought

    def _run(self, call: CallConfig, thought: Thought) -> Thought:
        block = self.blocks[call.block]
        writes = type(block.config).role not in ("output", "probe")
        for _ in range(call.repeat):
            h = thought.states[call.read]
            for name in call.add:
                h = h + self._addend(name, thought, h)
            thought.focus = call.write if writes else call.read
            saved = thought.states[thought.focus]
            thought.states[thought.focus] = h
            with torch.set_grad_enabled(call.grad and torch.is_grad_enabled()):
                thought = block(thought)
            if not writes:
                thought.states[thought.focus] = saved
            self.account(thought, [call.block], block.cost)
        thought.focus = self.default_state
        return thought

    def run_step(self, calls: list[CallConfig], thought: Thought, rows: Tensor | None = None) -> Thought:
        """Run a step's calls in order (on `rows` only, as `run_call`). A compiled generation's one-token step
        runs as one compiled graph when every call can join it (`th1nker.fused_step`); a step whose outputs
        are not wanted runs its `latent_calls` only."""
        if not thought.outputs_wanted:
            calls = self.latent_calls(calls)
        decoding = thought.decoding
        if rows is None and decoding is not None and decoding.compiled and decoding.fuse_steps \
                and thought.latent.shape[1] == 1:
            fused = self._fused_step(calls)
            if fused is not None:
                return fused.run(thought)
        for call in calls:
            self.run_call(call, thought, rows)
        return thought

    def latent_calls(self, calls: list[CallConfig]) -> list[CallConfig]:
        """The calls of a step, less its output blocks and probes and the calls whose written state only they
        read (a Huginn coda before its head): what the step must run when its outputs are not wanted."""
        kept = [c for c in calls if type(self.blocks[c.block].config).role not in ("output", "probe")]
        while True:
            read = {self.default_state} | {c.read for c in kept} | {a for c in kept for a in c.add}
            needed = [c for c in kept if c.write in read]
            if len(needed) == len(kept):
                return kept
            kept = needed

    def _fused_step(self, calls: list[CallConfig]):
        """The FusedStep of `calls` (one per distinct step), or None when a call cannot join one; the last
        list asked about is remembered, as a schedule asks with the same list at every step of a run."""
        from th1nker.fused_step import FusedStep

        if self._last_fused[0] is not calls:
            key = FusedStep.of(self, calls)
            if key is not None and key not in self._fused_steps:
                self._fused_steps[key] = FusedStep(self, key)
            self._last_fused = (calls, None if key is None else self._fused_steps[key])
        return self._last_fused[1]

    def account(self, thought: Thought, blocks: list[str], cost: float) -> None:
        """Charge the calls of `blocks` (in order, costing `cost` in all) to every example of `thought`."""
        thought.cost = thought.cost + cost
        thought.calls = thought.calls + len(blocks)
        thought.trace.extend(blocks)

    def _addend(self, name: str, thought: Thought, like: Tensor) -> Tensor:
        """A state, or an encoded input (`input` = the only one), to add to what a call reads."""
        if name in thought.states:
            x = thought.states[name]
        else:
            if name == INPUT:
                if len(thought.inputs) != 1:
                    raise DataError(f"schedule.step: add: [input] is ambiguous with inputs {sorted(thought.inputs)}; "
                                    "name one of them")
                name = next(iter(thought.inputs))
            if name not in thought.inputs:
                raise DataError(f"schedule.step: add: '{name}' is neither a state nor one of the batch's inputs "
                                f"{sorted(thought.inputs)}")
            x = thought.inputs[name].tokens
        if x.shape != like.shape:
            raise DataError(f"schedule.step: add: '{name}' has shape {tuple(x.shape)} but the state it is added to "
                            f"has {tuple(like.shape)}; give both the same slots (model.states.*.slots)")
        return x

    # -- losses and answers -------------------------------------------------------------------
    def step_loss(self, thought: Thought, batch: Batch) -> Tensor:
        """Sum of the losses of the outputs produced at the step that just ended (on the rows that ran)."""
        losses = [self.blocks[o.block].output_loss(o, batch.target) if o.rows is None
                  else self.blocks[o.block].output_loss(o.only(o.rows), batch.target[o.rows]) for o in thought.outputs]
        return torch.stack(losses).sum() if losses else thought.latent.new_zeros(())

    def prediction(self, thought: Thought) -> Tensor | None:
        """Each example's latest prediction, from the output block that answered last (None if none yet)."""
        if thought.last_block is None:
            return None
        return self.blocks[thought.last_block].predict(thought.latest[thought.last_block].logits)

    def think(self, batch: Batch, schedule=None, steps: int | None = None,
              generator: torch.Generator | None = None) -> Thought:
        """Run `steps` thinking steps (default: the recipe's) with `schedule` (default: the recipe's)."""
        from th1nker.loop import run_to_end

        return run_to_end(self, batch, schedule, steps, generator=generator)

    # -- what schedules and RL need -----------------------------------------------------------
    @cached_property
    def reads_store(self) -> bool:
        from th1nker.blocks import ReadLatentLayer

        return any(isinstance(b, ReadLatentLayer) for b in self.blocks.values())

    @cached_property
    def _masks(self) -> tuple[Tensor, Tensor]:
        g = self.graph
        rows = [g.mask(a) for a in g.actions] + [[False] * (len(g.actions) + 1), g.mask(None)]
        start = torch.tensor([a in g.start for a in g.actions])
        return torch.tensor(rows, dtype=torch.bool), start

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
