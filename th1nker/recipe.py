"""The recipe: a YAML file that declares blocks, graph, schedule, training and tracking.

`load_recipe(path, overrides)` resolves `base:` inheritance and `--set` overrides, validates the whole
recipe at once and raises one `RecipeError` listing every problem with its path.
"""

from __future__ import annotations

import copy
import difflib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Discriminator, Field, Tag, ValidationError, create_model, field_validator, model_validator

from th1nker.errors import RecipeError
from th1nker.schema import BlockConfig, Strict, unknown_name_message

__all__ = ["Recipe", "BlockConfig", "Strict", "load_recipe", "validate_recipe", "unknown_name_message"]

MAX_STEPS = 100_000  # thinking steps, per run: more is a typo, not a plan
MAX_DIM = 65_536     # widths and slot counts: beyond this, memory runs out long before training starts


class DataConfig(Strict):
    """Examples read from JSON-lines files, one example a line, as `th1nker data prepare` writes them."""

    train: str | None = Field(None, description="training examples (.jsonl), drawn in place of generated ones; null = "
                              "generate them. A relative path resolves against the recipe file's folder")
    eval: dict[int, str] = Field({}, description="difficulty -> its evaluation set (.jsonl); a difficulty not named "
                                 "here is generated. Relative paths resolve against the recipe file's folder")

    def resolved(self, folder: Path) -> "DataConfig":
        """The same files with relative paths made absolute against `folder`."""
        def absolute(path: str) -> str:
            return str((folder / Path(path).expanduser()).resolve())

        return DataConfig(train=absolute(self.train) if self.train else None,
                          eval={d: absolute(p) for d, p in self.eval.items()})


class TaskConfig(Strict):
    kind: str = Field(description="task name, see th1nker.tasks")
    train: tuple[int, int] = Field((8, 24), description="inclusive difficulty range sampled in training")
    eval: list[int] = Field([16, 48], description="difficulties evaluated, one fixed set each")
    eval_examples: int = Field(256, gt=0, le=1_000_000, description="examples per evaluated difficulty")
    path: str | None = Field(None, description="data file for file-based tasks (text_qa, text_lm, image_qa, audio_qa)")
    tokenizer: str | None = Field(None, description="sentencepiece .model for the task's text; null = the task's "
                                  "default (characters; text_lm: a BPE tokenizer trained on its corpus)")
    image_size: int = Field(32, gt=0, description="image tasks: images are drawn at / resized to this square size "
                            "(= model.encoders.image.image_size)")
    data: DataConfig | None = Field(None, description="read examples from JSON-lines files instead of generating "
                                    "them (paths relative to the recipe file's folder); null = generate")
    size: int | None = Field(None, gt=0, description="sudoku: the grid side (4, 6 or 9); difficulty = clues given")
    train_set: int | None = Field(None, gt=0, description="sudoku: train on one fixed set of this many instances, "
                                  "spread over the task.train difficulties and augmented on the fly; null = fresh ones")

    @field_validator("kind")
    @classmethod
    def _known_task(cls, kind: str) -> str:
        from th1nker.tasks import task_names

        if kind not in task_names():
            raise ValueError(unknown_name_message("task", kind, task_names()))
        return kind

    @field_validator("train")
    @classmethod
    def _ordered(cls, bounds: tuple[int, int]) -> tuple[int, int]:
        if bounds[0] > bounds[1]:
            raise ValueError(f"range {list(bounds)} is reversed; write [{bounds[1]}, {bounds[0]}]")
        if bounds[0] < 0:
            raise ValueError(f"difficulties are >= 0, got {bounds[0]}")
        return bounds


class StateConfig(Strict):
    """One named latent (a state): its length, how it starts, and the noise added in training."""

    slots: Literal["input"] | Annotated[int, Field(gt=0, le=MAX_DIM)] = Field(
        "input", description="latent positions: an int > 0, or 'input' = the input's length")
    init: Literal["random", "fixed", "learned"] = Field(
        "random", description="random per sample, a fixed random buffer (the same for every sample), or learned")
    scale: float = Field(1.0, ge=0, allow_inf_nan=False, description="standard deviation of the initial state")
    noise: float = Field(0.0, ge=0, allow_inf_nan=False, description="std of Gaussian noise added to the state at each training step")


LatentConfig = StateConfig  # the single-state spelling `model.latent`


class MemoryConfig(Strict):
    capacity: int | None = Field(256, ge=0, description="medium-term store: most step latents kept, oldest dropped "
                                 "first (null = all: memory then grows with every step)")
    grad_steps: int | None = Field(None, ge=0, description="reads backpropagate into the last K steps' latents; older ones are detached (null = all)")


class EncoderSizes(Strict):
    """Sizes shared by the image and audio encoders."""

    dim: int = Field(64, gt=0, description="encoder width, projected to model.dim")
    layers: int = Field(2, gt=0, description="transformer layers")
    heads: int = Field(4, gt=0, description="attention heads; divide dim")
    hidden: int = Field(128, gt=0, description="feed-forward width")

    @model_validator(mode="after")
    def _heads_divide_dim(self):
        if self.dim % self.heads:
            raise ValueError(f"heads {self.heads} must divide dim {self.dim}")
        return self


class ImageEncoderConfig(EncoderSizes):
    """A ViT over image patches (CLS first), projected to the model width."""

    kind: Literal["vit"] = Field("vit", description="encoder kind")
    image_size: int = Field(32, gt=0, description="square input size in pixels (= task.image_size)")
    patch: int = Field(8, gt=0, description="patch side in pixels; divides image_size")

    @model_validator(mode="after")
    def _patch_divides_size(self):
        if self.image_size % self.patch:
            raise ValueError(f"patch {self.patch} must divide image_size {self.image_size}")
        return self


class AudioEncoderConfig(EncoderSizes):
    """16 kHz waveforms -> log-mel (100 Hz) -> three stride-2 convolutions (12.5 Hz) -> transformer -> model width."""

    kind: Literal["audio"] = Field("audio", description="encoder kind")
    n_mels: int = Field(80, gt=0, description="mel bands")


class EncodersConfig(Strict):
    """Encoders of the non-text inputs, run once per sample; text is always embedded."""

    image: ImageEncoderConfig | None = Field(None, description="encodes batch.inputs['image'] (B, 3, H, W)")
    audio: AudioEncoderConfig | None = Field(None, description="encodes batch.inputs['audio'] (B, T) 16 kHz waveforms")


class ModelConfig(Strict):
    dim: int = Field(64, gt=0, le=MAX_DIM, description="latent width")
    latent: StateConfig | None = Field(None, description="the one state, named `latent` (shorthand for states: {latent: ...})")
    states: dict[str, StateConfig] | None = Field(
        None, description="named latents (short-term memory), the first is the default state every plain step "
        "entry reads and writes; default {latent: {}}")
    memory: MemoryConfig = MemoryConfig()
    encoders: EncodersConfig = EncodersConfig()
    blocks: dict[str, BlockConfig] = Field(min_length=1, description="instance name -> block config; one name = one set of weights")

    @model_validator(mode="after")
    def _one_way_to_name_states(self):
        if self.latent is not None and self.states is not None:
            raise ValueError("give model.latent (one state) or model.states (named states), not both")
        if self.states is None:
            self.states = {"latent": self.latent or StateConfig()}
            self.latent = None
        if not self.states:
            raise ValueError("model.states: declare at least one state, e.g. {latent: {slots: input}}")
        return self

    @property
    def default_state(self) -> str:
        """The state that plain step entries, the store, the probe and RL observe."""
        return next(iter(self.states))


class GraphConfig(Strict):
    start: list[str] = Field(description="blocks a step may start with")
    edges: dict[str, list[str]] = Field(description="block -> blocks that may follow it")
    end: list[str] | None = Field(None, description="blocks a step may end with (default: the output blocks)")


INPUT = "input"  # in a call's `add`: the task's input (its one encoded modality)


class CallConfig(Strict):
    """One call site of a step: which block runs, on which state, with what added in.

    `{block: net, write: z, add: [y, input]}` is z <- net(z + y + x). A block instance (one set of
    weights) may be called at several sites. Output blocks `read` the state they decode and write none.
    """

    block: str = Field(description="the block instance to run")
    write: str | None = Field(None, description="the state the call writes (default: `read`, else the default state)")
    read: str | None = Field(None, description="the state the block reads (default: `write`, else the default state)")
    add: list[str] = Field([], description="states, input modalities (text, image, audio) or `input` added to "
                           "what the block reads, before it runs")
    grad: bool = Field(True, description="false: run without gradients (e.g. HRM's 1-step gradient)")
    repeat: int = Field(1, gt=0, le=10_000, description="call this many times in a row")

    def resolved(self, default_state: str) -> "CallConfig":
        """This call with `read` and `write` filled in."""
        read = self.read or self.write or default_state
        return self.model_copy(update={"read": read, "write": self.write or read})


def _entry_tag(value) -> str:
    return "name" if isinstance(value, str) else "call"


StepEntry = Annotated[Union[Annotated[str, Tag("name")], Annotated[CallConfig, Tag("call")]], Discriminator(_entry_tag)]


def as_call(entry: StepEntry, default_state: str) -> CallConfig:
    """A step entry as a resolved call: a bare name reads and writes the default state."""
    call = CallConfig(block=entry) if isinstance(entry, str) else entry
    return call.resolved(default_state)


class ScheduleConfig(Strict):
    kind: Literal["fixed", "random", "probe", "policy"] = "fixed"
    step: list[StepEntry] = Field(min_length=1, description="the calls of one step: block names (on the default state) "
                                  "or mappings {block, write, read, add, grad, repeat}; fixed schedule, also the default walk")
    steps: int = Field(20, gt=0, le=MAX_STEPS, description="thinking steps in training")
    min_len: int = Field(2, gt=0, description="random schedule: shortest step")
    max_len: int = Field(6, gt=0, le=1000, description="random/probe schedules: longest step")

    def describe(self) -> str:
        """One step in short: `read -> net:z+y+input x6 -> net:y+z -> head(y)`."""
        parts = []
        for e in self.step:
            if isinstance(e, str):
                parts.append(e)
                continue
            text = e.block + (f"({e.read})" if e.read and not e.write else "") + (f":{e.write}" if e.write else "")
            text += "".join(f"+{a}" for a in e.add) + (f" x{e.repeat}" if e.repeat > 1 else "")
            parts.append(text + ("" if e.grad else " (no grad)"))
        return " -> ".join(parts)

    def blocks(self) -> list[str]:
        """The block of every call of one step, repeats expanded."""
        out: list[str] = []
        for entry in self.step:
            out += [entry] if isinstance(entry, str) else [entry.block] * entry.repeat
        return out
    probe: str | None = Field(None, description="probe schedule: the probe instance that chooses")
    greedy: bool = Field(True, description="probe schedule: argmax (true) or sample")


class TBPTTConfig(Strict):
    mode: str = Field("progressive", description="the truncated-backprop plan: full, window, progressive, last_k, dtnet "
                      "(see th1nker.train.plans)")
    window: int = Field(8, gt=0, le=MAX_STEPS, description="steps with gradients (window size / max window / k)")
    update_per_window: bool = Field(False, description="one optimiser update per gradient window; with accumulate N, "
                                    "update k averages window k of N micro-batches")
    mean_depth: float | None = Field(None, gt=0, description="last_k: mean of the random total depth (default schedule.steps)")
    alpha: float = Field(0.5, ge=0, le=1, description="dtnet: weight of the progressive (no-grad prefix + grad suffix) "
                         "unroll; 1 - alpha weighs the full unroll")

    @field_validator("mode")
    @classmethod
    def _known_plan(cls, mode: str) -> str:
        from th1nker.plans import PLANS

        if mode not in PLANS:
            raise ValueError(unknown_name_message("tbptt plan", mode, PLANS))
        return mode


class OptimizerConfig(Strict):
    kind: Literal["adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    warmup: int = Field(100, ge=0, description="linear warm-up updates")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decay floor as a fraction of lr")


class DistributedConfig(Strict):
    """Training on several processes under torchrun (`th1nker train --nproc N`); one process ignores it."""

    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="ddp: every rank holds the model, gradients are averaged; "
        "fsdp: FSDP2 shards parameters, gradients and optimizer state (large models)")
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="process-group backend; auto = nccl on CUDA, gloo on CPU")


class TeacherConfig(Strict):
    """Kickstarting: distil a trained run's per-step answers into this model, with a decaying weight."""

    run: str = Field(description="a run folder of `th1nker train` (its recipe.yaml and checkpoints); same task")
    weight: float = Field(1.0, gt=0, description="initial weight of the KL(teacher || student) loss at every step")
    decay_updates: int | None = Field(None, gt=0, description="the weight falls linearly to 0 over this many "
                                      "updates (default max_updates / 2)")
    temperature: float = Field(1.0, gt=0, description="softmax temperature of both sides")


class CleanMemoryConfig(Strict):
    """Cleaned-memory training: a share of the batches run without background knowledge (the long-term
    memory removed, and/or a medium-term store that keeps nothing), so that the model also learns to
    solve from the input alone."""

    fraction: float = Field(0.25, gt=0, le=1, description="share of training batches run with cleaned memory")
    clear: list[Literal["longterm", "medium"]] = Field(["longterm"], min_length=1, description="which memories "
                                                       "those batches run without")


class TrainConfig(Strict):
    tbptt: TBPTTConfig = TBPTTConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    batch_size: int = Field(64, gt=0, le=MAX_DIM, description="global batch: under torchrun each rank takes batch_size / ranks")
    accumulate: int = Field(1, gt=0, description="micro-batches per optimiser update")
    max_updates: int = Field(1000, gt=0)
    max_minutes: float | None = Field(None, gt=0, description="stop after this wall time (cosine decays over it)")
    grad_clip: float | None = Field(1.0, gt=0)
    loss_weights: Literal["uniform", "last", "increasing"] = "uniform"
    ema: float | None = Field(0.999, gt=0, lt=1, description="EMA decay of weights used for evaluation; null = off")
    checkpoint_every: int = Field(200, gt=0)
    log_every: int = Field(25, gt=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$", description="auto (CUDA when present), cpu, cuda, cuda:N")
    aux_loss_weight: float = Field(0.01, ge=0, description="weight of auxiliary losses (MoE balance)")
    distributed: DistributedConfig = DistributedConfig()
    teacher: TeacherConfig | None = Field(None, description="kickstart from a trained run (see TeacherConfig)")
    clean_memory: CleanMemoryConfig | None = Field(None, description="run a share of the batches with cleaned "
                                                   "memory (see CleanMemoryConfig); null = never")
    init: str | None = Field(None, description="fine-tune: start from the weights of this run folder of `th1nker "
                             "train` (its newest checkpoint, EMA weights when kept); the model section must build "
                             "the same tensors; optimiser, schedule and update count start fresh")
    max_skipped: int = Field(50, ge=1, description="stop the run (exit 2) when this many updates in a row were "
                             "skipped for a non-finite loss or gradient")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="forward precision: bf16 autocast (CPU and CUDA) or fp32; auto = bf16 on CUDA, fp32 on CPU")
    compile: bool = Field(False, description="torch.compile every block with dynamic shapes (no recompile per new "
                          "step count or length); eager with one warning where compile is unavailable")


class HaltConfig(Strict):
    """When an example stops thinking at evaluation (th1nker.halting); a probe schedule halts on its own."""

    rule: Literal["none", "max_prob", "entropy", "kl", "head", "q"] = Field(
        "none", description="none; max_prob: every position's top probability >= threshold; entropy: every "
        "position's entropy (nats) <= threshold; kl: mean KL between successive steps' outputs <= threshold; "
        "head: the output block's halting head (halt: true) says right with probability >= threshold; "
        "q: its Q head (halt_mode: q) values halting above continuing (threshold unused)")
    threshold: float = Field(0.9, ge=0, description="the rule's threshold")


class EvalConfig(Strict):
    steps: list[Annotated[int, Field(gt=0, le=MAX_STEPS)]] = Field(
        [5, 10, 20, 40, 80], min_length=1, description="thinking steps evaluated")
    batch_size: int = Field(256, gt=0)
    ablate: list[str] = Field([], description="inputs replaced by zeros at evaluation (ablation), e.g. [image]")
    halt: HaltConfig = Field(HaltConfig(), description="a halting rule: examples stop thinking once it holds")
    compile: bool = Field(False, description="torch.compile the blocks with dynamic shapes for evaluation, `think` "
                          "and `generate` (as train.compile does for training); a ThinkerLM generates through its "
                          "compiled static-cache decode step")
    clean_memory: bool = Field(False, description="evaluate without long-term memory (each example's pool removed): "
                               "does the model still answer without background knowledge?")


class TrackingConfig(Strict):
    enabled: bool = True
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    experiment: str = "th1nker"


class RLConfig(Strict):
    """RL (`th1nker rl`): over block choices (the probe that `schedule.probe` names) or over reads (the
    choosers of read blocks with `choose` set)."""

    policy: Literal["blocks", "reads"] = Field(
        "blocks", description="blocks: the probe learns which block runs next and when to stop; reads: the "
        "choosers of read_longterm / read_parts blocks with `choose: C` learn which of the indexer's top-C blocks "
        "(the prior's top-C parts) to read")
    difficulties: list[int] | None = Field(None, min_length=1, description="difficulties of the episodes "
                                           "(default: the task's training range)")
    algorithm: Literal["reinforce"] = Field("reinforce", description="policy gradient: REINFORCE with a batch-mean baseline")
    updates: int = Field(300, gt=0, description="policy updates")
    episodes: int = Field(64, gt=1, description="episodes per update, run as one batch of one difficulty")
    lr: float = Field(3e-3, gt=0, description="learning rate of the probe (Adam)")
    reward: Literal["linear", "blockdrop", "ratio"] = Field(
        "blockdrop", description="with c = compute / the fixed schedule's compute: linear = correct - lam * c; "
        "blockdrop = 1 - c^2 if correct else -penalty; ratio = correct / c")
    lam: float = Field(0.5, ge=0, description="linear reward: price of one fixed schedule's worth of compute")
    penalty: float = Field(1.0, ge=0, description="blockdrop reward: what a wrong answer costs (BlockDrop's gamma)")
    max_blocks: int | None = Field(None, gt=0, description="episodes are truncated after this many blocks "
                                   "(default schedule.steps * schedule.max_len); also after schedule.steps steps")
    entropy: float = Field(0.01, ge=0, description="weight of the policy's entropy bonus")
    alternate_every: int | None = Field(None, gt=0, description="N RL updates, then N supervised updates, and so on; null = RL only")
    supervised_schedule: Literal["fixed", "random"] = Field("fixed", description="schedule of the supervised updates")
    log_every: int = Field(10, gt=0, description="updates between MLflow logs")


class Recipe(Strict):
    """A whole Th1nker recipe."""

    name: str
    description: str = ""
    seed: int = 0
    task: TaskConfig
    model: ModelConfig
    graph: GraphConfig
    schedule: ScheduleConfig
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    tracking: TrackingConfig = TrackingConfig()
    rl: RLConfig | None = None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


@lru_cache(maxsize=None)
def _schema_for(kinds: tuple[str, ...]) -> type[Recipe]:
    from th1nker.registry import config_class

    configs = tuple(config_class(k) for k in kinds)
    union = configs[0] if len(configs) == 1 else Annotated[Union[configs], Field(discriminator="kind")]
    blocks = ModelConfig.model_fields["blocks"]
    model = create_model("ModelConfig", __base__=ModelConfig,
                         blocks=(dict[str, union], Field(min_length=1, description=blocks.description)))
    return create_model("Recipe", __base__=Recipe, model=(model, ...))


def recipe_schema() -> type[Recipe]:
    """The Recipe class whose block union holds every kind registered now (plugins included)."""
    from th1nker.registry import kinds

    return _schema_for(tuple(kinds()))


def read_yaml(path: Path) -> dict:
    from th1nker.recipe_file import load_yaml  # strict: unreadable files and duplicate keys are RecipeErrors

    data = load_yaml(path)
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def merge(base: dict, child: dict) -> dict:
    """Deep-merge `child` over `base`; a mapping whose `kind` changes is replaced, not merged, and
    `null` over a mapping or a list (a block, a section, an edge list) deletes it; over a plain value
    null is the value."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        old = out.get(key)
        if value is None and isinstance(old, (dict, list)):
            del out[key]
        elif isinstance(old, dict) and isinstance(value, dict) and old.get("kind", value.get("kind")) == value.get("kind", old.get("kind")):
            out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """Read a recipe and its `base:` chain (each file names at most one parent)."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise RecipeError(f"{path}: recipe bases form a cycle: {chain}")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise RecipeError(f"{path}: base: expected one file name, got {base!r}")
    return merge(resolve_bases(path.parent / base, (*seen, path)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b.c=VALUE' -> (['a','b','c'], value). Scalars stay strings so the schema types them."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. --set train.max_updates=10")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, (str, int, float, bool)):
        value = raw  # let pydantic coerce by the field's declared type ("3" -> int, "x" -> str)
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            if not isinstance(child, dict):
                child = node[k] = {} if child is None else child
            if not isinstance(child, dict):
                raise RecipeError(f"--set {text}: '{k}' is not a section")
            node = child
        node[keys[-1]] = value
    return data


def format_errors(error: ValidationError, data: dict) -> list[str]:
    """One line per pydantic error, with a dotted path; unknown kinds name the closest match."""
    from th1nker.registry import kinds

    lines = []
    for err in error.errors():
        loc = [str(p) for p in err["loc"]]
        # a tagged union puts the tag into the path (model.blocks.x.<kind>.field): drop it
        if len(loc) >= 4 and loc[:2] == ["model", "blocks"] and loc[3] in kinds():
            del loc[3]
        if len(loc) >= 4 and loc[:2] == ["schedule", "step"] and loc[3] in ("name", "call"):
            del loc[3]
        path = ".".join(loc) or "<root>"
        if err["type"] == "union_tag_invalid":
            msg = unknown_name_message("block kind", str(err["ctx"]["tag"]), kinds())
            path += ".kind"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
            parent = err["loc"][:-1]
            msg += _field_hint(error, str(err["loc"][-1]), parent)
        elif err["type"] == "value_error":
            msg = str(err["ctx"]["error"])
        else:
            msg = f"{err['msg']} (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else err["msg"]
        lines.append(f"{path}: {msg}")
    return lines


def _field_hint(error: ValidationError, name: str, parent) -> str:
    model = recipe_schema()
    try:
        for part in parent:
            if isinstance(model, type) and issubclass(model, BaseModel) and str(part) in model.model_fields:
                model = model.model_fields[str(part)].annotation
            else:
                return ""
        if isinstance(model, type) and issubclass(model, BaseModel):
            close = difflib.get_close_matches(name, list(model.model_fields), n=1)
            return f" (did you mean '{close[0]}'?)" if close else ""
    except TypeError:
        pass
    return ""


def validate_recipe(data: dict, source: str = "<recipe>") -> Recipe:
    """Validate a recipe mapping: schema first, then the block graph; every error in one RecipeError."""
    try:
        recipe = recipe_schema().model_validate(data)
    except ValidationError as e:
        lines = format_errors(e, data)
        raise RecipeError(f"{source}: {len(lines)} error(s)\n" + "\n".join(f"  {line}" for line in lines)) from None
    from th1nker.graph import BlockGraph

    problems = model_problems(recipe) or BlockGraph.problems(recipe)
    if problems:
        raise RecipeError(f"{source}: {len(problems)} error(s)\n" + "\n".join(f"  {p}" for p in problems))
    return recipe


def model_problems(recipe: Recipe) -> list[str]:
    """What the schema cannot see field by field: sizes against the model width, and the states that
    every call names."""
    m, out = recipe.model, []
    for name, cfg in m.blocks.items():
        out += [f"model.blocks.{name}.{p}" for p in cfg.problems(m.dim)]
    inputs = {INPUT, "text", "image", "audio"}
    for i, entry in enumerate(recipe.schedule.step):
        if isinstance(entry, str):
            continue
        for field in ("write", "read"):
            state = getattr(entry, field)
            if state is not None and state not in m.states:
                out.append(f"schedule.step.{i}.{field}: {unknown_name_message('state', state, m.states)}")
        for name in entry.add:
            if name not in m.states and name not in inputs:
                out.append(f"schedule.step.{i}.add: {unknown_name_message('state or input', name, [*m.states, *sorted(inputs)])}")
    return out


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, resolve and validate a recipe file."""
    path = Path(path)
    data = apply_overrides(resolve_bases(path), overrides or [])
    recipe = validate_recipe(data, str(path))
    if recipe.task.data is not None:  # data files are named relative to the recipe's folder
        recipe.task.data = recipe.task.data.resolved(path.parent)
    return recipe


def dump_recipe(recipe: Recipe, path: Path) -> None:
    """Write the resolved recipe as YAML (atomically)."""
    from th1nker.io import atomic_write_text

    atomic_write_text(path, recipe.to_yaml())
