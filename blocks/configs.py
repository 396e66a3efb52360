"""The recipe fields of every built-in block kind: plain pydantic, no torch, so validation stays light.

Each block file binds its class to the config here (`@register("process")` finds `ProcessConfig`);
`BUILTIN` maps every built-in kind to its config and to the class that implements it. `problems`
checks what a config cannot check alone (sizes against the model width).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from th1nker.schema import BlockConfig, Strict

# the Thinker LM's tiny sizes (μOmni's); th1nker.omni.config.ThinkerConfig has the same defaults
THINKER_LAYERS, THINKER_HEADS, THINKER_HIDDEN, THINKER_CONTEXT, THINKER_TOP_K = 4, 4, 1024, 512, 2


def _divides(name: str, heads: int, width: int, what: str) -> list[str]:
    return [] if width % heads == 0 else [f"{name}: {heads} heads must divide {what} {width}"]


class ReadConfig(BlockConfig):
    """Cross-attention from the latent to a source (the base of every read block)."""

    role = "read"
    mode: Literal["attention", "aligned"] = Field(
        "attention", description="attention: cross-attend; aligned: source position i feeds latent slot i")
    heads: int = Field(4, gt=0, description="attention heads; divide model.dim")
    positions: bool = Field(True, description="relative (rotary) positions between latent slots and source")

    def problems(self, dim: int) -> list[str]:
        return _divides("heads", self.heads, dim, "model.dim") if self.mode == "attention" else []


class InputReadConfig(ReadConfig):
    stream: int | None = Field(None, gt=0, description="read this many input tokens per step (step t: tokens "
                               "t*stream onwards), nothing once all are read; null = the whole input every step")


class ImageReadConfig(InputReadConfig):
    tokens: Literal["all", "cls"] = Field("all", description="all: CLS then every patch token; cls: CLS alone")

    @model_validator(mode="after")
    def _cls_is_one_token(self):
        if self.tokens == "cls" and self.stream is not None:
            raise ValueError("tokens: cls reads one token; stream needs tokens: all")
        return self


class ReadLatentConfig(ReadConfig):
    positions: bool = Field(False, description="rotary positions over stored entries")


class LevelConfig(Strict):
    segment: int = Field(16, gt=0, description="tokens compressed together")
    ratio: int = Field(4, gt=0, description="segment tokens per compressed latent")


class CompressConfig(Strict):
    chunk: int = Field(16, gt=0, description="tokens per stored block")
    levels: list[LevelConfig] = Field([LevelConfig()], min_length=1, description="compression levels, applied in order")
    method: Literal["tokens", "mean"] = Field("tokens", description="tokens: learned compression tokens; mean: mean pooling")
    layers: int = Field(1, ge=0, description="process layers per level")
    heads: int = Field(4, gt=0, description="attention heads")
    conditioned: bool = Field(False, description="compression also reads the current latent (blocks cannot be precomputed)")

    @model_validator(mode="after")
    def _lengths_fit(self):
        length = self.chunk
        for i, lv in enumerate(self.levels):
            if lv.segment % lv.ratio or length % lv.segment:
                raise ValueError(f"levels.{i}: a segment of {lv.segment} must be a multiple of ratio {lv.ratio} "
                                 f"and divide the {length} tokens that reach this level")
            length //= lv.ratio
        return self

    @property
    def latents(self) -> int:
        """Compressed latents per block."""
        return self.chunk // math.prod(lv.ratio for lv in self.levels)


class CompressedReadConfig(ReadConfig):
    """A read that compresses chunks of tokens into latents, ranks what it could read with a learned
    indexer, and reads the top-k, or one item a learned chooser picks (read_longterm, read_parts)."""

    positions: bool = Field(False, description="rotary positions over the blocks read")
    top_k: int = Field(4, gt=0, description="blocks read per call")
    key_dim: int = Field(64, gt=0, description="indexer query/key width")
    compress: CompressConfig = Field(CompressConfig(), description="how a block of tokens becomes latents")
    distill: float = Field(1.0, ge=0, description="weight of the indexer's KL to the read attention (training)")
    choose: int | None = Field(None, ge=2, description="outside training, read ONE block, picked by a learned "
                               "chooser among the indexer's top-`choose` (trained by `th1nker rl` with "
                               "rl.policy: reads); null = read the top_k")

    @model_validator(mode="after")
    def _attends(self):
        if self.mode != "attention":
            raise ValueError(f"mode: {self.kind} attends over the blocks it selects; use mode: attention")
        return self

    def problems(self, dim: int) -> list[str]:
        return super().problems(dim) + _divides("compress.heads", self.compress.heads, dim, "model.dim")


class ReadLongTermConfig(CompressedReadConfig):
    dense_train: bool = Field(True, description="training reads the whole pool; false: the indexer's top-k")
    distractors: int = Field(0, ge=0, description="training: the pools of this many other examples of the batch "
                             "join each pool (in-batch negatives), to learn to pick one block among many")
    search: Literal["torch", "faiss_ivf", "faiss_hnsw", "faiss_flat"] = Field(
        "torch", description="top-k over an on-disk store: exact in torch, or a faiss index (IVF, HNSW, flat)")


class ReadPartsConfig(CompressedReadConfig):
    input: str = Field("document", description="the batch input of token ids (the task's long input) to split")
    parts: int = Field(8, ge=2, description="equal parts the input is split into; they must divide its length, "
                       "each part a whole number of compress.chunk tokens")
    top_k: int = Field(1, gt=0, description="outside training without `choose`: parts read per call, the best "
                       "by the prior (1: the prior's top-1; = parts: every part)")
    choose: int | None = Field(None, ge=2, description="outside training, read ONE part, picked by a learned "
                               "chooser among the prior's top-`choose` parts (trained by `th1nker rl` with "
                               "rl.policy: reads); null = read the top_k")

    @model_validator(mode="after")
    def _fit_parts(self):
        for field in ("top_k", "choose"):
            value = getattr(self, field)
            if value is not None and value > self.parts:
                raise ValueError(f"{field}: {value} exceeds parts: {self.parts} (there are only {self.parts} parts "
                                 f"to read); set {field} to at most {self.parts}")
        return self


class ProcessConfig(BlockConfig):
    mixer: Literal["attention", "conv1d", "conv2d", "mlp"] = Field("conv1d", description="how positions exchange information")
    layers: int = Field(2, gt=0, le=1024, description="mixer+MLP layers per call")
    kernel: int = Field(3, gt=0, description="convolution kernel size (odd)")
    heads: int = Field(4, gt=0, description="attention heads (attention mixer); divide model.dim")
    hidden: int | None = Field(None, gt=0, description="MLP width (default 2 x dim)")
    norm_out: bool = Field(True, description="RMS-normalise the latent on the way out (bounded over many steps)")

    @model_validator(mode="after")
    def _odd_kernel(self):
        if self.mixer in ("conv1d", "conv2d") and self.kernel % 2 == 0:
            raise ValueError(f"kernel: {self.kernel} is even; an odd kernel keeps the latent's length")
        return self

    def problems(self, dim: int) -> list[str]:
        return _divides("heads", self.heads, dim, "model.dim") if self.mixer == "attention" else []


class DTNetConfig(BlockConfig):
    """DT-net's recurrent block (Bansal et al. 2022) over the input's 2-D grid, without normalisation."""

    blocks: int = Field(2, gt=0, le=64, description="residual blocks after the recall conv (two convs, ReLU, skip, ReLU)")
    kernel: int = Field(3, gt=0, description="convolution kernel size (odd)")
    recall: bool = Field(True, description="concatenate the encoded input to the latent before the first conv "
                         "(DT-net's recall); false: the first conv sees the latent alone")

    @model_validator(mode="after")
    def _odd_kernel(self):
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel: {self.kernel} is even; an odd kernel keeps the grid's size")
        return self


class ThinkerLayersConfig(Strict):
    """The sizes of a stack of Thinker layers, shared by every block built from them."""

    layers: int = Field(THINKER_LAYERS, gt=0, le=1024, description="transformer layers")
    heads: int = Field(THINKER_HEADS, gt=0, description="attention heads; divide model.dim")
    kv_heads: int | None = Field(None, gt=0, description="key/value heads (grouped-query attention); null = heads")
    hidden: int = Field(THINKER_HIDDEN, gt=0, description="feed-forward width (per expert)")
    experts: int = Field(0, ge=0, description="experts per layer (a top-k mixture); 0 = one SwiGLU")
    top_k: int = Field(THINKER_TOP_K, gt=0, description="experts each position is routed to")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in training")

    @model_validator(mode="after")
    def _routing_fits(self):
        if self.experts and self.top_k > self.experts:
            raise ValueError(f"top_k {self.top_k} exceeds experts {self.experts}")
        if self.kv_heads and self.heads % self.kv_heads:
            raise ValueError(f"kv_heads {self.kv_heads} must divide heads {self.heads}")
        return self

    def problems(self, dim: int) -> list[str]:
        return _divides("heads", self.heads, dim, "model.dim")


class ThinkerBlockConfig(ThinkerLayersConfig, BlockConfig):
    context: int = Field(THINKER_CONTEXT, gt=0, description="most latent slots it takes")
    once: bool = Field(False, description="run once per gradient window and reuse the result at its later calls "
                       "(a prelude over the input, re-injected into a recurrent core)")


class OutputConfig(BlockConfig):
    role = "output"
    cost: float = Field(0.25, ge=0, allow_inf_nan=False, description="compute cost of one call, used by RL rewards")


class LabelOutputConfig(OutputConfig):
    halt: bool = Field(False, description="also a halting head: one logit per example trained with BCE on "
                       "'the answer is exactly right' (TRM's Q-halt head)")
    halt_bias: float = Field(-5.0, description="initial bias of the halting logit (negative = not yet right)")
    halt_weight: float = Field(0.5, ge=0, description="weight of the halting BCE in the step's loss")
    halt_mode: Literal["bce", "q"] = Field(
        "bce", description="with halt: true, bce: one logit, BCE on 'exactly right' (TRM); q: HRM's Q-learning "
        "halting, two logits (halt, continue): halt on 'exactly right', continue on the sigmoid of the next "
        "step's max(halt, continue) (its halt alone at the last step), computed ahead without gradient")


class ConvOutputConfig(LabelOutputConfig):
    widths: list[Annotated[int, Field(gt=0)]] = Field(
        [32, 8], description="hidden widths of the 3x3 conv head before the class conv (DT-net's: 32, 8)")


class TextOutputConfig(OutputConfig):
    """An autoregressive text decoder reading a state by cross-attention."""

    layers: int = Field(2, gt=0, le=1024, description="causal decoder layers (self- then cross-attention, SwiGLU)")
    heads: int = Field(4, gt=0, description="attention heads; divide model.dim")
    hidden: int = Field(256, gt=0, description="feed-forward width")
    max_len: int = Field(32, gt=0, le=4096, description="most tokens decoded (the answer's end token included)")
    temperature: float = Field(0.0, ge=0, description="decoding: 0 = greedy, else sampling at this temperature")
    top_k: int | None = Field(None, gt=0, description="sampling: among the k likeliest tokens")
    top_p: float | None = Field(None, gt=0, le=1, description="sampling: nucleus mass")

    def problems(self, dim: int) -> list[str]:
        return _divides("heads", self.heads, dim, "model.dim")


class ThinkerLMConfig(ThinkerLayersConfig, OutputConfig):
    """A whole ThinkerLM (embedding, causal layers, norm, head; width model.dim, vocabulary the task's) over
    the text input's token ids: an ordinary decoder-only LM, trained by the normal trainer, generating
    with ThinkerLM.generate and convertible to Hugging Face Llama."""

    cost: float = Field(1.0, ge=0, allow_inf_nan=False, description="compute cost of one call, used by RL rewards")
    context: int = Field(THINKER_CONTEXT, gt=0, description="most token positions it takes")
    tie_embeddings: bool = Field(True, description="the head shares the token embedding's weights")
    norm_eps: float = Field(1e-6, gt=0, description="RMSNorm epsilon")
    rope_base: float = Field(10000.0, gt=0, description="rotary base (Llama's rope_theta)")
    rope_pairs: Literal["interleaved", "half"] = Field(
        "half", description="channels rotated together: half (i, i+d/2, Llama's) or interleaved (2i, 2i+1)")


class SpeechOutputConfig(OutputConfig):
    dim: int | None = Field(None, gt=0, description="Talker width (default: the model's)")
    layers: int = Field(2, gt=0, le=1024, description="Talker decoder layers")
    heads: int = Field(4, gt=0, description="Talker attention heads; divide its width")
    hidden: int | None = Field(None, gt=0, description="Talker MLP width (default 2 x its width)")
    stop_weight: float = Field(1.0, ge=0, description="weight of the end-of-speech loss")
    griffin_lim_iters: int = Field(32, gt=0, description="Griffin-Lim iterations when writing a wav")

    def problems(self, dim: int) -> list[str]:
        width = self.dim or dim
        return _divides("heads", self.heads, width, "the Talker width")


class ProbeConfig(BlockConfig):
    role = "probe"
    cost: float = Field(0.05, ge=0, allow_inf_nan=False, description="compute cost of one call, used by RL rewards")
    hidden: int = Field(64, gt=0, description="width of the probe's MLP")
    halt_bias: float = Field(-5.0, description="initial bias of the halt logit (negative = keep thinking)")


# kind -> (config, "module:Class" that implements it)
BUILTIN: dict[str, tuple[type[BlockConfig], str]] = {
    "read_text": (InputReadConfig, "th1nker.blocks.read:TextRead"),
    "read_image": (ImageReadConfig, "th1nker.blocks.read:ImageRead"),
    "read_audio": (InputReadConfig, "th1nker.blocks.read:AudioRead"),
    "read_latent": (ReadLatentConfig, "th1nker.blocks.read:ReadLatentLayer"),
    "read_longterm": (ReadLongTermConfig, "th1nker.blocks.longterm:ReadLongTermLayer"),
    "read_parts": (ReadPartsConfig, "th1nker.blocks.parts:ReadPartsLayer"),
    "process": (ProcessConfig, "th1nker.blocks.process:ProcessLayer"),
    "dtnet": (DTNetConfig, "th1nker.blocks.dtnet:DTNetBlock"),
    "thinker": (ThinkerBlockConfig, "th1nker.blocks.thinker:ThinkerBlock"),
    "output_tokens": (LabelOutputConfig, "th1nker.blocks.output:TokenOutput"),
    "output_class": (LabelOutputConfig, "th1nker.blocks.output:ClassOutput"),
    "output_conv2d": (ConvOutputConfig, "th1nker.blocks.output:ConvTokenOutput"),
    "output_text": (TextOutputConfig, "th1nker.blocks.text_output:TextOutput"),
    "thinker_lm": (ThinkerLMConfig, "th1nker.blocks.thinker_lm:ThinkerLMOutput"),
    "output_speech": (SpeechOutputConfig, "th1nker.blocks.speech:SpeechOutput"),
    "probe": (ProbeConfig, "th1nker.blocks.probe:Probe"),
}
