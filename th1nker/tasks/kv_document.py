"""Key-value facts as one long input: the answer lies in one part of it. Difficulty = facts per section.

A document is 8 sections (think: the files of a code base) of `difficulty` facts each, a fact being
`key_len` key symbols then its value: batch.inputs["document"] holds (B, 8 * difficulty * (key_len + 1))
token ids, so a `read_parts` block with 2, 4 or 8 parts splits it evenly at any difficulty. The question
(the text input) is the key of one fact, the target its value (a class). A model that reads only part
of the document answers only if that part holds the asked fact. A quarter of the other keys (up to 15)
are hard negatives: the asked key with one symbol changed, spread over the document, so a part that
holds most of the key's symbols need not hold the key. (No swapped-symbol negatives, as kv_facts has: the cheap part scores
read_parts ranks by are bags of symbols, which cannot tell a key from its symbols in another order.)
"""

from __future__ import annotations

import torch

from th1nker.tasks import register_task
from th1nker.tasks.base import Batch
from th1nker.tasks.kv_facts import KVFacts


@register_task("kv_document")
class KVDocument(KVFacts):
    """Answer a key's value from a long document of facts (to be read part by part)."""

    swaps = False
    sections = 8

    def __init__(self, config, seed: int = 0, key_len: int = 4):
        super().__init__(config, seed, facts=1, key_len=key_len)

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        count = self.sections * difficulty
        codes = self._codes(n, count, generator)
        asked = torch.randint(0, count, (n,), generator=generator)
        keys, values, ids = self._facts(self._near_misses(codes, asked, generator), generator)
        rows = torch.arange(n)
        return Batch({"text": keys[rows, asked], "document": ids.flatten(1)}, values[rows, asked],
                     difficulty=difficulty)
