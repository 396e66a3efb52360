import pydantic
import pytest
import torch

from th1nker.omni.thinker import ThinkerConfig, ThinkerLM, sample

SMALL = dict(vocab=64, dim=64, layers=2, heads=4, hidden=128, context=160)
CONFIGS = {
    "mha": ThinkerConfig(**SMALL),
    "gqa": ThinkerConfig(**SMALL, kv_heads=2),
    "moe": ThinkerConfig(**SMALL, experts=4, top_k=2),
}




def model(name: str) -> ThinkerLM:
    torch.manual_seed(0)
    return ThinkerLM(CONFIGS[name]).eval()


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("prompt_len", [1, 100])
def test_cached_logits_equal_full_forward(name, prompt_len):
    lm = model(name)
    prompt = torch.randint(0, 64, (2, prompt_len), generator=torch.Generator().manual_seed(1))
    seq = lm.generate(prompt, 24)
    with torch.no_grad():
        full, _ = lm(seq)
        cache = lm.new_cache()
        steps = [lm(seq[:, :prompt_len], cache=cache)[0]]
        steps += [lm(seq[:, i:i + 1], cache=cache)[0] for i in range(prompt_len, seq.shape[1])]
    cached = torch.cat(steps, dim=1)
    assert cached.shape == full.shape
    assert (cached - full).abs().max() <= 1e-4


@pytest.mark.parametrize("name", CONFIGS)
def test_greedy_with_and_without_cache_agree(name):
    lm = model(name)
    prompt = torch.randint(0, 64, (3, 5), generator=torch.Generator().manual_seed(2))
    cached = lm.generate(prompt, 20)
    assert cached.shape == (3, 25) and torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, lm.generate(prompt, 20, use_cache=False))


def test_sampling_is_reproducible_with_a_seed():
    lm = model("mha")
    prompt = torch.zeros(2, 1, dtype=torch.long)
    a = lm.generate(prompt, 30, temperature=1.5, top_k=20, top_p=0.9, seed=7)
    b = lm.generate(prompt, 30, temperature=1.5, top_k=20, top_p=0.9, seed=7)
    c = lm.generate(prompt, 30, temperature=1.5, top_k=20, top_p=0.9, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_top_k_and_top_p_filter_tokens():
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0]]).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample(logits, 1.0, top_k=2, generator=g).tolist()) <= {0, 1}
    assert set(sample(logits, 1.0, top_p=0.5, generator=g).tolist()) == {0}


def test_generation_stops_at_eos_for_all_rows():
    lm = model("mha")
    prompt = torch.randint(0, 64, (2, 4), generator=torch.Generator().manual_seed(3))
    greedy = lm.generate(prompt, 10)
    eos = int(greedy[0, 6])
    first = int((greedy[0, 4:] == eos).nonzero()[0, 0]) + 4
    assert torch.equal(lm.generate(prompt[:1], 10, eos_id=eos), greedy[:1, :first + 1])
    both = lm.generate(prompt, 10, eos_id=eos)
    assert torch.equal(both[0, :first + 1], greedy[0, :first + 1])
    assert (both[0, first:] == eos).all()  # a finished row keeps receiving eos


def test_generate_rejects_more_than_the_context():
    with pytest.raises(ValueError, match="context"):
        model("mha").generate(torch.zeros(1, 150, dtype=torch.long), 20)


def test_tied_embeddings_share_storage():
    tied = ThinkerLM(ThinkerConfig(**SMALL))
    assert tied.head.weight.data_ptr() == tied.embed.weight.data_ptr()
    untied = ThinkerLM(ThinkerConfig(**SMALL, tie_embeddings=False))
    assert untied.head.weight.data_ptr() != untied.embed.weight.data_ptr()
    n_tied = sum(p.numel() for p in tied.parameters())
    assert sum(p.numel() for p in untied.parameters()) == n_tied + 64 * 64


def test_embeddings_input_matches_ids():
    lm = model("mha")
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        assert torch.allclose(lm(ids)[0], lm(embeddings=lm.embed(ids))[0])
    with pytest.raises(ValueError):
        lm()


def test_nan_guard_is_a_debug_option_that_names_the_layer():
    lm = model("mha")
    with torch.no_grad():
        lm.blocks[1].mlp.down.weight.fill_(float("nan"))
    assert not lm.check_finite  # off by default: each check is a host sync
    assert torch.isnan(lm(torch.zeros(1, 3, dtype=torch.long))[0]).all()
    lm.check_finite = True
    with pytest.raises(FloatingPointError, match=r"blocks\.1"):
        lm(torch.zeros(1, 3, dtype=torch.long))


def test_loss_and_aux_loss_backpropagate():
    lm = model("moe").train()
    ids = torch.randint(0, 64, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 8:] = False
    ce, aux = lm.loss(ids, mask)
    assert 3.5 < ce.item() < 4.8  # about log(64) at init
    (ce + 0.01 * aux).backward()
    assert lm.blocks[0].mlp.router.weight.grad.abs().sum() > 0
    assert model("mha").loss(ids)[1] == 0


def test_config_forbids_unknown_fields():
    with pytest.raises(pydantic.ValidationError):
        ThinkerConfig(layer=3)
    assert ThinkerConfig().model_dump()["vocab"] == 5000
