"""Compression, the indexer and the read_longterm block: shapes, selection, distillation, gradients."""

import pytest
import torch
from pydantic import ValidationError

from th1nker.errors import DataError
from th1nker.memory import CompressConfig, Compressor, Indexer, LongTermMemory, distill_loss
from th1nker.memory.indexer import block_scores
from th1nker.model import Th1nker
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task

from conftest import RECIPES

FLAT = {"chunk": 64, "levels": [{"segment": 64, "ratio": 16}]}
HIER = {"chunk": 64, "levels": [{"segment": 16, "ratio": 4}, {"segment": 16, "ratio": 4}]}


@pytest.mark.parametrize("levels", [FLAT, HIER, {**HIER, "method": "mean"}, {**HIER, "conditioned": True}])
def test_compressor_shapes(levels):
    config = CompressConfig(**levels)
    comp = Compressor(config, vocab=10, dim=16)
    ids = torch.randint(0, 10, (3, 64))
    cond = torch.randn(3, 2, 16) if config.conditioned else None
    assert config.latents == 4 and comp(ids, cond).shape == (3, 4, 16)


def test_mean_pooling_is_the_mean_of_token_embeddings():
    comp = Compressor(CompressConfig(**FLAT, method="mean"), vocab=10, dim=8)
    ids = torch.randint(0, 10, (2, 64))
    x = comp.embed(ids) + comp.pos
    assert torch.allclose(comp(ids), x.view(2, 4, 16, 8).mean(2))


def test_compression_config_checks_lengths_and_conditioning():
    with pytest.raises(ValidationError, match="levels.1"):
        CompressConfig(chunk=64, levels=[{"segment": 16, "ratio": 4}, {"segment": 6, "ratio": 3}])
    with pytest.raises(ValidationError, match="levels.0"):
        CompressConfig(chunk=20, levels=[{"segment": 8, "ratio": 4}])
    comp = Compressor(CompressConfig(**FLAT, conditioned=True), vocab=10, dim=16)
    with pytest.raises(DataError, match="needs the current latent"):
        comp(torch.zeros(1, 64, dtype=torch.long))
    with pytest.raises(DataError, match="compress.chunk to 32"):
        comp(torch.zeros(1, 32, dtype=torch.long), torch.zeros(1, 1, 16))


def test_indexer_shapes_and_detached_inputs():
    idx = Indexer(dim=16, key_dim=8)
    latent = torch.randn(2, 3, 16, requires_grad=True)
    blocks = torch.randn(2, 5, 4, 16, requires_grad=True)
    scores = idx.scores(idx.query(latent), idx.key(blocks))
    assert idx.query(latent).shape == (2, 8) and idx.key(blocks).shape == (2, 5, 4, 8) and scores.shape == (2, 5)
    scores.sum().backward()
    assert latent.grad is None and blocks.grad is None


def test_block_scores_have_the_form_of_the_read_attention_share():
    """softmax over blocks of log-sum-exp scores = a softmax over every latent, summed per block; the
    pool form (Indexer.scores) and the store form (block_scores) agree."""
    query, keys = torch.randn(1, 8), torch.randn(1, 5, 3, 8)
    scores = Indexer.scores(query, keys)
    share = (keys[0].flatten(0, 1) @ query[0]).softmax(0).view(5, 3).sum(1)
    assert torch.allclose(scores.softmax(-1)[0], share, atol=1e-6)
    assert torch.allclose(block_scores(query, keys[0]), scores, atol=1e-5)


def test_a_distillation_step_lowers_the_kl():
    """One optimiser step on the indexer's KL to the read layer's attention over a pool lowers that KL."""
    model, batch, block = _longterm()
    thought = model.blocks["read"](model.start(batch))
    with torch.no_grad():
        blocks = block.compressor(batch.inputs["memory"].flatten(0, 1)).unflatten(0, (3, 8))
    teacher = block.block_attention(thought.latent, blocks)
    kl = lambda: distill_loss(block.indexer.scores(block.indexer.query(thought.latent), block.indexer.key(blocks)), teacher)
    opt = torch.optim.SGD(block.indexer.parameters(), lr=0.1)
    before = kl()
    before.backward()
    opt.step()
    assert kl().item() < before.item()


def _longterm(overrides=()):
    recipe = load_recipe(RECIPES / "longterm.yaml", list(overrides))
    task = make_task(recipe.task, recipe.seed)
    torch.manual_seed(0)
    model = Th1nker(recipe, task.spec)
    batch = task.batch(3, 8, torch.Generator().manual_seed(0))
    return model, batch, model.blocks["recall"]


def test_read_longterm_reads_the_pool_in_training_and_the_indexer_top_k_in_evaluation():
    model, batch, block = _longterm()
    m = block.compressor.latents
    thought = model.blocks["read"](model.start(batch))
    assert block.train().source(thought).tokens.shape == (3, 8 * m, 64)
    assert [loss.name for loss in thought.window.losses] == ["indexer.recall"]
    thought.window.cache.clear()
    blocks = block.compressor(batch.inputs["memory"].flatten(0, 1)).unflatten(0, (3, 8))
    top = block.indexer.scores(block.indexer.query(thought.latent), block.indexer.key(blocks)).topk(4).indices
    read = block.eval().source(thought).tokens
    expected = blocks[torch.arange(3)[:, None], top].flatten(1, 2)
    assert read.shape == (3, 4 * m, 64) and torch.allclose(read, expected, atol=1e-6)


def test_distractors_add_other_examples_blocks_in_training_only():
    model, batch, block = _longterm(["model.blocks.recall.distractors=2"])
    m = block.compressor.latents
    thought = model.blocks["read"](model.start(batch))
    tokens = block.train().source(thought).tokens
    assert tokens.shape == (3, 3 * 8 * m, 64)
    assert torch.equal(tokens[0, 8 * m:16 * m], tokens[2, :8 * m])  # example 0 also reads example 2's pool
    assert block.eval().source(thought).tokens.shape == (3, 4 * m, 64)


def test_the_answer_loss_trains_the_compressor_through_the_read():
    model, batch, block = _longterm()
    thought = model.start(batch)
    for name in ("read", "recall", "think", "answer"):
        thought = model.blocks[name](thought)
    model.blocks["answer"].loss(thought.latest["answer"].logits, batch.target).backward()
    assert block.compressor.embed.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in block.indexer.parameters())  # the indexer learns from its KL only


def test_block_attention_sums_to_one_over_the_pool():
    model, batch, block = _longterm()
    latent = torch.randn(3, 1, 64)
    share = block.block_attention(latent, torch.randn(3, 8, block.compressor.latents, 64))
    assert share.shape == (3, 8) and torch.allclose(share.sum(-1), torch.ones(3))


def test_read_longterm_searches_a_store_on_disk(tmp_path):
    model, batch, block = _longterm()
    model.eval()
    blocks = batch.inputs["memory"].flatten(0, 1)
    with torch.no_grad():
        latents = block.compressor(blocks)
        store = LongTermMemory.create(tmp_path / "m", block.indexer.key_dim, latents[0].numel(),
                                      key_vectors=block.compressor.latents)
        store.append(block.indexer.key(latents), latents.flatten(1))
        thought = model.blocks["read"](model.start(batch))
        thought.longterm = store
        read = block.source(thought).tokens
    rows = thought.reads["recall"]
    assert rows.shape == (3, 4) and read.shape == (3, 4 * block.compressor.latents, 64)
    assert torch.allclose(read, latents[rows].flatten(1, 2))
    wrong = LongTermMemory.create(tmp_path / "w", block.indexer.key_dim, 7)
    thought.longterm = wrong
    with pytest.raises(DataError, match="build the store with this recipe"):
        block.source(thought)
