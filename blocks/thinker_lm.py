"""The thinker_lm block: a whole ThinkerLM as an output block, so a recipe trains the real Thinker LM."""

from __future__ import annotations

from torch import Tensor

from th1nker.blocks.base import Block, BuildContext
from th1nker.blocks.configs import ThinkerLMConfig
from th1nker.blocks.output import OutputLayer
from th1nker.errors import DataError
from th1nker.omni.layers import pop_aux_loss
from th1nker.omni.thinker import ThinkerConfig, ThinkerLM
from th1nker.registry import register
from th1nker.thought import AuxLoss, Output, Thought


@register("thinker_lm")
class ThinkerLMOutput(OutputLayer):
    """Next-token logits of a ThinkerLM (`self.lm`) over the text input's ids, at every position.

    It embeds the ids itself (the model's text encoder then has no weights) and ignores the latent.
    `self.lm` is an ordinary ThinkerLM: `th1nker generate` runs its cached `generate`, `th1nker convert
    to-hf RUN` writes it as a Llama folder. While the thinking loop decodes (`thought.decoding`), each
    call keeps the ThinkerLM's own KV cache.
    """

    def __init__(self, config: ThinkerLMConfig, ctx: BuildContext):
        Block.__init__(self, config, ctx)  # no norm and head of OutputLayer's: the ThinkerLM has its own
        self.halt = None
        self.aux_weight = ctx.aux_weight
        fields = config.model_dump(exclude={"kind", "cost"})
        self.lm = ThinkerLM(ThinkerConfig(vocab=ctx.spec.vocab, dim=ctx.dim, **fields))

    def forward(self, thought: Thought) -> Thought:
        source = thought.inputs.get("text")
        if source is None or source.ids is None:
            raise DataError(f"block '{self.name}' (thinker_lm) reads token ids: the task must give text input")
        cache = None
        if thought.decoding is not None:
            cache = thought.decoding.get(self.name, thought.trace.count(self.name), len(self.lm.blocks))
        logits, _ = self.lm(source.ids, mask=None if cache else source.mask, cache=cache)
        thought.record(Output(thought.step, self.name, logits))
        balance = pop_aux_loss(self.lm) if self.lm.config.experts else None
        if balance is not None and self.training:
            thought.window.losses.append(AuxLoss("balance", balance, self.aux_weight))
        return thought

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return super().loss(logits[:, : target.shape[1]], target)
