"""The parts read layer: a long input split into equal parts; the latent reads the part(s) a cheap prior
or a learned chooser picks (which file of a code base, which section of a document)."""

from __future__ import annotations

import torch
from torch import Tensor

from th1nker.blocks.longterm import ReadLongTermLayer
from th1nker.errors import DataError
from th1nker.memory.indexer import distill_loss
from th1nker.registry import register
from th1nker.thought import AuxLoss, Source, Thought


@register("read_parts")
class ReadPartsLayer(ReadLongTermLayer):
    """Reads a long token input (`input`, e.g. a document) split into `parts` equal parts.

    Every call scores the parts with a cheap prior: the indexer's query from the latent against one key
    per part, made from the mean of the part's token embeddings (no compression needed). A part that is
    read is compressed chunk by chunk (`compress`) and attended to. Three modes:
    training reads every part and distils the read attention into the prior (as read_longterm);
    outside training, without `choose`, it reads the prior's `top_k` parts (1: the prior's top-1;
    `parts`: all of them); with `choose: C` it reads ONE part, the one a `ReadChooser` picks among the
    prior's top-C, matching the latent against each candidate's per-chunk mean embeddings (finer than
    the prior's one key per part), and records the choice (`thought.choices`) for `rl.policy: reads`.
    The parts read at the latest call are in `thought.reads[name]` (B, parts read).
    """

    def source(self, thought: Thought) -> Source | None:
        ids, embedded = self._parts(thought)  # (B, P, T) ids, (B, P, T, D) token embeddings
        b, p, t = ids.shape
        chunk, d = self.config.compress.chunk, thought.latent.shape[-1]
        scores = self.indexer.scores(self.indexer.query(thought.latent), self.indexer.key(embedded.mean(2, keepdim=True)))
        if self.training:
            parts = self._compressed(thought, ids.view(b, -1, chunk)).reshape(b, p, -1, d)
            if torch.is_grad_enabled() and self.config.distill:
                loss = distill_loss(scores, self.block_attention(thought.latent, parts))
                thought.window.losses.append(AuxLoss(f"indexer.{self.name}", loss, self.config.distill, reduce="sum"))
            return Source(parts.flatten(1, 2))
        if self.choosing:
            prior, top = scores.topk(min(self.config.choose, p), dim=1)
            chunks = embedded.view(b, p, t // chunk, chunk, -1).mean(3)  # (B, P, T / chunk, D)
            candidates = chunks.gather(1, top[:, :, None, None].expand(-1, -1, *chunks.shape[2:]))
            pick = self.chooser.choose(self.name, thought, candidates, prior)
            read = top.gather(1, pick[:, None])
        else:
            read = scores.topk(min(self.top_k, p), dim=1).indices
        thought.reads[self.name] = read
        chosen = ids.gather(1, read[:, :, None].expand(-1, -1, t))  # (B, k, T)
        return Source(self._compressed(thought, chosen.reshape(b, -1, chunk), cache=False).reshape(b, -1, d))

    def _parts(self, thought: Thought) -> tuple[Tensor, Tensor]:
        """The input's token ids as (B, P, T) and its embeddings as (B, P, T, D), after checking its length."""
        name, p, chunk = self.config.input, self.config.parts, self.config.compress.chunk
        if name not in thought.inputs or thought.inputs[name].ids is None:
            raise DataError(f"block '{self.name}' reads the token input '{name}' but the batch has only "
                            f"{sorted(thought.inputs)}; use a task with a long input (e.g. kv_document) or set "
                            f"model.blocks.{self.name}.input")
        src = thought.inputs[name]
        b, s = src.ids.shape
        if s % p or (s // p) % chunk:
            raise DataError(f"model.blocks.{self.name}.parts: {p} parts of the '{name}' input's {s} tokens must be "
                            f"equal and each a multiple of compress.chunk ({chunk}) tokens; pick parts dividing "
                            f"{s // chunk} (or task difficulties whose inputs split evenly)")
        if src.tokens.shape[-1] == 0:
            raise DataError(f"block '{self.name}': the '{name}' input has no embeddings (a thinker_lm block embeds "
                            "the text itself); read_parts needs the text encoder's embeddings")
        return src.ids.view(b, p, s // p), src.tokens.detach().view(b, p, s // p, -1)

    def candidates(self, batch, memory=None) -> int:
        """Parts an example can read from."""
        return self.config.parts
