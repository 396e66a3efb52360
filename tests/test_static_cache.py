"""The static KV cache and the compiled decode step of ThinkerLM.generate."""

import pytest
import torch

from th1nker.omni.thinker import ThinkerConfig, ThinkerLM
from th1nker.train import speed


def tiny_lm(**sizes) -> ThinkerLM:
    torch.manual_seed(0)
    config = dict(vocab=64, dim=32, layers=2, heads=4, kv_heads=2, hidden=64, context=128)
    return ThinkerLM(ThinkerConfig(**{**config, **sizes})).eval()


@pytest.mark.parametrize("pairs", ["interleaved", "half"])
def test_a_static_cache_gives_the_logits_of_the_whole_sequence(pairs):
    """Eagerly: a prompt, then one token at a time through fixed-size buffers and a position tensor."""
    lm, ids = tiny_lm(rope_pairs=pairs), torch.randint(0, 64, (2, 12))
    full, _ = lm(ids)
    cache = lm.new_cache(40, static=True)
    parts = []
    for chunk in (ids[:, :5], ids[:, 5:6], ids[:, 6:7], ids[:, 7:]):
        parts.append(lm(chunk, cache=cache)[0])
        cache[0].position += chunk.shape[1]
    assert int(cache[0].position) == 12 and cache[0]._k.shape[-2] == 40
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_rotary_in_real_arithmetic_equals_the_complex_rotation():
    from th1nker.omni.layers import Rotary

    for pairs in ("interleaved", "half"):
        rotary, x = Rotary(16, pairs=pairs), torch.randn(2, 3, 7, 16)
        turns = rotary._table(7, x.device)[:7]
        torch.testing.assert_close(rotary._rotate_real(x, torch.view_as_real(turns)), rotary(x))


def test_a_static_cache_larger_than_the_context_is_refused():
    with pytest.raises(ValueError, match="context of 128"):
        tiny_lm().new_cache(129, static=True)


def test_compiled_generation_gives_the_uncached_tokens_with_one_graph():
    """One compiled graph serves every token of every call in the same cache bucket (prompts of
    other lengths included): positions are data, not shapes."""
    lm = tiny_lm()
    prompt = torch.randint(0, 64, (1, 5))
    expected = lm.generate(prompt, 20, use_cache=False)
    before = speed.compiled_graphs()
    assert torch.equal(lm.generate(prompt, 20, compile=True), expected)
    assert speed.compiled_graphs() == before + 1
    longer = torch.randint(0, 64, (1, 9))
    assert torch.equal(lm.generate(longer, 30, compile=True), lm.generate(longer, 30, use_cache=False))
    assert speed.compiled_graphs() == before + 1


def test_compile_without_the_cache_is_refused():
    with pytest.raises(ValueError, match="use_cache=False"):
        tiny_lm().generate(torch.zeros(1, 3, dtype=torch.long), 2, use_cache=False, compile=True)
