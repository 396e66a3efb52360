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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from th1nker.errors import RecipeError


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BlockConfig(Strict):
    """Fields every block has; each block kind extends this with its own."""

    kind: str
    cost: float = Field(1.0, ge=0, description="compute cost of one call, used by RL rewards")


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
    eval_examples: int = Field(256, gt=0, description="examples per evaluated difficulty")
    path: str | None = Field(None, description="data file for file-based tasks (text_qa, text_lm, image_qa, audio_qa)")
    tokenizer: str | None = Field(None, description="sentencepiece .model for the task's text; null = the task's "
                                  "default (characters; text_lm: a BPE tokenizer trained on its corpus)")
    image_size: int = Field(32, gt=0, description="image tasks: images are drawn at / resized to this square size "
                            "(= model.encoders.image.image_size)")
    data: DataConfig | None = Field(None, description="read examples from JSON-lines files instead of generating "
                                    "them (paths relative to the recipe file's folder); null = generate")

    @field_validator("kind")
    @classmethod
    def _known_task(cls, kind: str) -> str:
        from th1nker.tasks import TASKS

        if kind not in TASKS:
            raise ValueError(unknown_name_message("task", kind, TASKS))
        return kind


class LatentConfig(Strict):
    slots: Literal["input"] | int = Field("input", description="latent positions: an int, or 'input' = input length")
    init: Literal["random", "fixed", "learned"] = Field("random", description="random per sample, a fixed random buffer, or learned")
    scale: float = Field(1.0, ge=0, description="standard deviation of the initial latent")
    noise: float = Field(0.0, ge=0, description="std of Gaussian noise added to the latent at each training step")


class MemoryConfig(Strict):
    capacity: int | None = Field(None, ge=0, description="medium-term store: most step latents kept (null = all)")
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
    dim: int = Field(64, gt=0, description="latent width")
    latent: LatentConfig = LatentConfig()
    memory: MemoryConfig = MemoryConfig()
    encoders: EncodersConfig = EncodersConfig()
    blocks: dict[str, BlockConfig] = Field(description="instance name -> block config; one name = one set of weights")


class GraphConfig(Strict):
    start: list[str] = Field(description="blocks a step may start with")
    edges: dict[str, list[str]] = Field(description="block -> blocks that may follow it")
    end: list[str] | None = Field(None, description="blocks a step may end with (default: the output blocks)")


class ScheduleConfig(Strict):
    kind: Literal["fixed", "random", "probe", "policy"] = "fixed"
    step: list[str] = Field(description="the blocks of one step (fixed schedule; also the default walk)")
    steps: int = Field(20, gt=0, description="thinking steps in training")
    min_len: int = Field(2, gt=0, description="random schedule: shortest step")
    max_len: int = Field(6, gt=0, description="random/probe schedules: longest step")
    probe: str | None = Field(None, description="probe schedule: the probe instance that chooses")
    greedy: bool = Field(True, description="probe schedule: argmax (true) or sample")


class TBPTTConfig(Strict):
    mode: Literal["full", "window", "progressive"] = "progressive"
    window: int = Field(8, gt=0, description="steps with gradients (window size / max window)")
    update_per_window: bool = Field(False, description="window mode: one optimiser update per window")


class OptimizerConfig(Strict):
    kind: Literal["adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
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


class TrainConfig(Strict):
    tbptt: TBPTTConfig = TBPTTConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    batch_size: int = Field(64, gt=0, description="global batch: under torchrun each rank takes batch_size / ranks")
    accumulate: int = Field(1, gt=0, description="micro-batches per optimiser update")
    max_updates: int = Field(1000, gt=0)
    max_minutes: float | None = Field(None, gt=0, description="stop after this wall time (cosine decays over it)")
    grad_clip: float | None = Field(1.0, gt=0)
    loss_weights: Literal["uniform", "last", "increasing"] = "uniform"
    ema: float | None = Field(0.999, gt=0, lt=1, description="EMA decay of weights used for evaluation; null = off")
    checkpoint_every: int = Field(200, gt=0)
    log_every: int = Field(25, gt=0)
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    aux_loss_weight: float = Field(0.01, ge=0, description="weight of auxiliary losses (MoE balance)")
    distributed: DistributedConfig = DistributedConfig()


class EvalConfig(Strict):
    steps: list[int] = Field([5, 10, 20, 40, 80], description="thinking steps evaluated")
    batch_size: int = Field(256, gt=0)
    ablate: list[str] = Field([], description="inputs replaced by zeros at evaluation (ablation), e.g. [image]")


class TrackingConfig(Strict):
    enabled: bool = True
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    experiment: str = "th1nker"


class RLConfig(Strict):
    """RL over block choices (`th1nker rl`): trains the probe that `schedule.probe` names."""

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


def unknown_name_message(what: str, name: str, known) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {what} '{name}'{hint} (known: {', '.join(known)})"


@lru_cache(maxsize=None)
def _schema_for(kinds: tuple[str, ...]) -> type[Recipe]:
    from th1nker.registry import config_class

    configs = tuple(config_class(k) for k in kinds)
    union = configs[0] if len(configs) == 1 else Annotated[Union[configs], Field(discriminator="kind")]
    model = create_model("ModelConfig", __base__=ModelConfig, blocks=(dict[str, union], ...))
    return create_model("Recipe", __base__=Recipe, model=(model, ...))


def recipe_schema() -> type[Recipe]:
    """The Recipe class whose block union holds every kind registered now (plugins included)."""
    from th1nker.registry import kinds

    return _schema_for(tuple(kinds()))


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def merge(base: dict, child: dict) -> dict:
    """Deep-merge `child` over `base`; a mapping whose `kind` changes is replaced, not merged."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and old.get("kind", value.get("kind")) == value.get("kind", old.get("kind")):
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

    problems = BlockGraph.problems(recipe)
    if problems:
        raise RecipeError(f"{source}: {len(problems)} error(s)\n" + "\n".join(f"  {p}" for p in problems))
    return recipe


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
