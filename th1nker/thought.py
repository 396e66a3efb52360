"""The Thought: everything that flows through the blocks during one run of thinking.

Every field has a stated lifetime: per run (states, inputs, memories, trace, cost), per step (`outputs`),
per gradient window (`window`: auxiliary losses and caches, dropped at every window boundary), per call
(`focus`: the state the running block sees as `latent`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from th1nker.omni.layers import KVCache, StaticKVCache


@dataclass
class Source:
    """Encoded tokens a read layer attends to: (B, S, D) with a (B, S) mask (True = real)."""

    tokens: Tensor
    mask: Tensor | None = None
    grid: tuple[int, int] | None = None
    ids: Tensor | None = None  # text: the token ids (B, S) the tokens embed


@dataclass
class Output:
    """The logits an output block produced at one thinking step."""

    step: int
    block: str
    logits: Tensor
    rows: Tensor | None = None  # (B,) bool: the examples that ran the block (None = all)
    halt: Tensor | None = None  # (B,) halting logits, or (B, 2) Q-values (halt, continue) for a Q-halting head
    q_next: Tensor | None = None  # (B,) a Q head's bootstrapped continue target, set by the loop in training

    def detached(self) -> "Output":
        return Output(self.step, self.block, self.logits.detach(), self.rows,
                      None if self.halt is None else self.halt.detach(), self.q_next)

    def only(self, index: Tensor) -> "Output":
        """The examples `index` (a bool mask or indices) of this output."""
        return Output(self.step, self.block, self.logits[index], None, None if self.halt is None else self.halt[index],
                      None if self.q_next is None else self.q_next[index])


@dataclass
class AuxLoss:
    """An auxiliary loss a block added at one call (the MoE balance loss, the indexer's distillation).

    The loop reduces the calls of each `name` in a gradient window by `reduce` and adds `weight` times
    that to the window's loss.
    """

    name: str
    value: Tensor
    weight: float = 1.0
    reduce: str = "mean"  # "mean" | "sum" over the window's calls


@dataclass
class ReadChoice:
    """One choice a read block's chooser made at one call: which candidate each example read."""

    block: str
    index: Tensor     # (B,) the candidate read, 0 = the indexer's best
    log_prob: Tensor  # (B,) its log-probability under the chooser (differentiable while exploring)
    entropy: Tensor   # (B,) the entropy of the chooser's distribution


@dataclass
class WindowState:
    """What lives for one gradient window and must not cross its boundary: the blocks' auxiliary
    losses, and caches of values computed with the window's graph (e.g. compressed memory blocks)."""

    losses: list[AuxLoss] = field(default_factory=list)
    cache: dict[str, Tensor] = field(default_factory=dict)

    def aux_losses(self) -> dict[str, tuple[float, Tensor]]:
        """name -> (weight, the mean or sum of its values over the window's calls)."""
        groups: dict[str, list[AuxLoss]] = {}
        for loss in self.losses:
            groups.setdefault(loss.name, []).append(loss)
        out = {}
        for name, calls in groups.items():
            total = torch.stack([c.value.float() for c in calls]).sum()
            out[name] = (calls[0].weight, total / len(calls) if calls[0].reduce == "mean" else total)
        return out


@dataclass
class DecodeCache:
    """Per generation, across the runs of every new token: the KV caches of each causal block call,
    keyed by (block, call index in a run), holding the keys and values of the tokens before this run's.

    With `capacity`, every call's caches are fixed-size `StaticKVCache`s sharing one `position`, which
    the generator advances after each run (`advance`), so a block's one-token step keeps its shapes and
    `compiled` blocks may run it as one compiled graph (`th1nker generate --compile`).
    """

    caches: dict[tuple[str, int], list] = field(default_factory=dict)
    capacity: int | None = None
    position: Tensor | None = None
    compiled: bool = False
    fuse_steps: bool = True  # compiled: a fixed step whose calls all can runs as one graph (th1nker.fused_step)

    @classmethod
    def static(cls, capacity: int, device: torch.device, compiled: bool = False,
               fuse_steps: bool = True) -> "DecodeCache":
        return cls(capacity=capacity, position=torch.zeros((), dtype=torch.long, device=device), compiled=compiled,
                   fuse_steps=fuse_steps)

    def get(self, block: str, index: int, layers: int) -> list:
        """The `layers` caches of `block`'s call `index`, made at its first use."""
        if (block, index) not in self.caches:
            self.caches[(block, index)] = [KVCache() if self.capacity is None else
                                           StaticKVCache(self.capacity, self.position, static_address=False)
                                           for _ in range(layers)]
        return self.caches[(block, index)]

    def advance(self, tokens: int) -> None:
        """This run's `tokens` are in every cache: the next run writes after them (static caches)."""
        if self.position is not None:
            self.position += tokens

    def pad(self, block: str, calls: int, tokens: int) -> None:
        """This run's `tokens` left the loop after `calls` calls of `block`: its later calls' caches get the
        keys and values of its last call (Huginn's early exit), so every call's cache covers the same tokens."""
        last = self.caches.get((block, calls - 1))
        for (name, index), layers in self.caches.items():
            if name == block and index >= calls and last is not None:
                for cache, src in zip(layers, last):
                    cache.fill_from(src, tokens)


@dataclass
class Thought:
    """Named latent states (short-term memory) with the encoded inputs, memories and a record of the run.

    states: name -> (B, L, D); the running block reads and writes `latent`, the state its call names.
    inputs: modality -> Source, encoded once and re-read at every step. store: the medium-term
    LatentStore (of the default state). longterm: long-term memory, when the batch has one.
    trace: the blocks run, in order. cost: (B,) compute spent per example in the blocks' `cost` units;
    calls: (B,) block calls per example. outputs: what output blocks
    produced this step. latest: each output block's latest output over the run, merged over the rows
    that ran it. halted: (B,) bool, set by the probe or a halting rule; all_live: no example has halted
    (kept by the loop, so schedules need not ask the device). last_action: (B,) the policy schedule's last
    choice per example (kept across steps and windows). reads: rows an on-disk memory read returned,
    per block, at its latest call. decoding: set while generating token by token (per generation).
    outputs_wanted: False in a training window without gradients, whose outputs nothing reads (per window):
    a fixed step then runs only the calls that change a state something else reads (`Th1nker.latent_calls`).
    explore: set by an RL trainer, read blocks with a chooser sample their choice with it (else greedy);
    choices: every such choice of the run, in order (per run).
    """

    states: dict[str, Tensor]
    inputs: dict[str, Source]
    store: object
    longterm: object | None = None
    focus: str = "latent"
    step: int = 0
    grids: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    trace: list[str] = field(default_factory=list)
    cost: Tensor | None = None
    calls: Tensor | None = None
    outputs: list[Output] = field(default_factory=list)
    latest: dict[str, Output] = field(default_factory=dict)
    last_block: str | None = None
    halted: Tensor | None = None
    all_live: bool = True
    last_action: Tensor | None = None
    window: WindowState = field(default_factory=WindowState)
    reads: dict[str, Tensor] = field(default_factory=dict)
    decoding: DecodeCache | None = None
    outputs_wanted: bool = True
    explore: torch.Generator | None = None
    choices: list[ReadChoice] = field(default_factory=list)

    def __post_init__(self):
        ref = next(iter(self.states.values()))
        if self.cost is None:
            self.cost = torch.zeros(ref.shape[0], device=ref.device)
        if self.calls is None:
            self.calls = torch.zeros(ref.shape[0], dtype=torch.long, device=ref.device)
        if self.halted is None:
            self.halted = torch.zeros(ref.shape[0], dtype=torch.bool, device=ref.device)

    @property
    def latent(self) -> Tensor:
        """The state the running call reads and writes."""
        return self.states[self.focus]

    @latent.setter
    def latent(self, value: Tensor) -> None:
        self.states[self.focus] = value

    @property
    def grid(self) -> tuple[int, int] | None:
        """The 2-D layout of the focused state's slots, when it follows a grid-shaped input."""
        return self.grids.get(self.focus)

    def record(self, out: Output) -> None:
        """Keep an output block's result: this step's list, and its latest value per example."""
        self.outputs.append(out)
        old = self.latest.get(out.block)
        if out.rows is not None and old is not None:
            rows = out.rows.view(-1, *([1] * (out.logits.dim() - 1)))
            halt = out.halt if out.halt is None or old.halt is None else \
                torch.where(out.rows.view(-1, *([1] * (out.halt.dim() - 1))), out.halt, old.halt)
            out = Output(out.step, out.block, torch.where(rows, out.logits, old.logits), None, halt)
        self.latest[out.block] = out
        self.last_block = out.block

    def select(self, index: Tensor) -> "Thought":
        """The examples `index` as a Thought of their own, for one call; `merge` puts its result back.
        It shares this Thought's auxiliary losses; window caches hold full batches, so it starts none."""
        def rows(x):
            return x[index] if isinstance(x, Tensor) else x

        store = self.store.select(index) if hasattr(self.store, "select") else self.store
        inputs = {k: Source(s.tokens[index], rows(s.mask), s.grid, rows(s.ids)) for k, s in self.inputs.items()}
        return Thought({k: v[index] for k, v in self.states.items()}, inputs, store, rows(self.longterm),
                       self.focus, self.step, self.grids, cost=self.cost[index], calls=self.calls[index],
                       halted=self.halted[index], window=WindowState(losses=self.window.losses),
                       explore=self.explore)

    def merge(self, part: "Thought", index: Tensor, written: str) -> None:
        """Take back what one call did on `select(index)`: the state it wrote, its cost, outputs and reads."""
        b = len(self.cost)
        self.states[written] = self.states[written].index_copy(0, index, part.states[written])
        self.cost = self.cost.index_copy(0, index, part.cost)
        self.calls = self.calls.index_copy(0, index, part.calls)
        self.trace += part.trace
        ran = torch.zeros(b, dtype=torch.bool, device=index.device).index_fill(0, index, True)
        for out in part.outputs:
            old = self.latest.get(out.block)
            logits = _scatter(None if old is None else old.logits, out.logits, index, b)
            halt = None if out.halt is None else _scatter(None if old is None else old.halt, out.halt, index, b)
            self.record(Output(out.step, out.block, logits, ran, halt))
        for name, read in part.reads.items():
            self.reads[name] = read.new_full((b, *read.shape[1:]), -1).index_copy(0, index, read)
        for c in part.choices:  # rows that did not run the block chose nothing: index -1, log-probability 0
            self.choices.append(ReadChoice(c.block, c.index.new_full((b,), -1).index_copy(0, index, c.index),
                                           _scatter(None, c.log_prob, index, b), _scatter(None, c.entropy, index, b)))

    def end_window(self) -> "Thought":
        """A gradient-window boundary: stop gradients into everything computed so far, and drop
        what lived for the window (its losses and caches)."""
        self.states = {k: v.detach() for k, v in self.states.items()}
        if hasattr(self.store, "detach"):
            self.store.detach()
        self.outputs = [o.detached() for o in self.outputs]
        self.latest = {k: o.detached() for k, o in self.latest.items()}
        self.window = WindowState()
        return self


def _scatter(base: Tensor | None, part: Tensor, index: Tensor, b: int) -> Tensor:
    """`part` (one row per index) written into `base` (B rows; zeros where there is none yet)."""
    base = base if base is not None else part.new_zeros((b, *part.shape[1:]))
    return base.index_copy(0, index, part)
