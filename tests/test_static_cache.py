"""The preallocated KV cache, the fused q/k/v projection, and the static cache behind the compiled
decode step of ThinkerLM.generate."""

import pytest
import torch

from th1nker.omni.layers import Attention, KVCache
from th1nker.omni.thinker import ThinkerConfig, ThinkerLM
from th1nker.train import speed


def test_cache_writes_in_place_until_full_then_doubles():
    cache = KVCache(capacity=8)
    k = torch.randn(2, 3, 5, 4)
    cache.extend(k, k + 1)
    storage = cache.k.untyped_storage().data_ptr()
    for i in range(3):
        step = torch.randn(2, 3, 1, 4)
        keys, values = cache.extend(step, step + 1)
        assert torch.equal(keys[..., -1:, :], step) and torch.equal(values[..., -1:, :], step + 1)
    assert cache.length == 8 and cache.k.untyped_storage().data_ptr() == storage  # no reallocation
    cache.extend(torch.zeros(2, 3, 1, 4), torch.zeros(2, 3, 1, 4))  # past the room: grows, keeps the past
    assert cache.length == 9 and torch.equal(cache.k[..., :5, :], k) and cache._k.shape[-2] == 16


def test_cache_without_capacity_equals_concatenation():
    cache, parts = KVCache(), [torch.randn(1, 2, n, 4) for n in (3, 1, 1, 4)]
    for p in parts:
        cache.extend(p, -p)
    assert torch.equal(cache.k, torch.cat(parts, dim=-2)) and torch.equal(cache.v, -torch.cat(parts, dim=-2))


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_self_attention_is_one_projection_and_cross_uses_its_row_blocks(kv_heads):
    attn = Attention(32, heads=4, kv_heads=kv_heads, rotary=False)
    assert {n for n, _ in attn.named_parameters()} == {"qkv.weight", "out.weight"}
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 3, 32)
    # Cross-attention on x itself equals self-attention: the row blocks are the fused projection's.
    assert torch.allclose(attn(x, context=x), attn(x), atol=1e-6)
    assert attn(x, context=ctx).shape == (2, 5, 32)


def test_weights_saved_with_separate_q_and_kv_load_into_the_fused_projection():
    attn = Attention(16, heads=2, bias=True)
    legacy = {"q.weight": torch.randn(16, 16), "q.bias": torch.randn(16),
              "kv.weight": torch.randn(32, 16), "kv.bias": torch.randn(32),
              "out.weight": torch.randn(16, 16), "out.bias": torch.randn(16)}
    attn.load_state_dict(dict(legacy))
    assert torch.equal(attn.qkv.weight, torch.cat([legacy["q.weight"], legacy["kv.weight"]]))
    assert torch.equal(attn.qkv.bias, torch.cat([legacy["q.bias"], legacy["kv.bias"]]))


def test_generate_fills_a_preallocated_cache_once():
    torch.manual_seed(0)
    lm = ThinkerLM(ThinkerConfig(vocab=50, dim=32, layers=2, heads=4, hidden=64, context=64)).eval()
    caches = []
    original = lm.new_cache
    lm.new_cache = lambda capacity=None, **kw: caches.append(original(capacity, **kw)) or caches[-1]
    prompt = torch.randint(0, 50, (2, 5))
    out = lm.generate(prompt, 20)
    assert caches[0][0]._k.shape[-2] == 25 and caches[0][0].length == 24  # the last token is never fed
    assert torch.equal(out, lm.generate(prompt, 20, use_cache=False))


def test_checkpoint_tensors_with_separate_q_and_kv_are_fused_by_name():
    from th1nker.omni.layers import fuse_qkv_keys

    lm = ThinkerLM(ThinkerConfig(vocab=50, dim=32, layers=2, heads=4, kv_heads=2, hidden=64))
    own = lm.state_dict()
    legacy = {}
    for key, value in own.items():
        if key.endswith("attn.qkv.weight"):
            legacy[key.replace("qkv", "q")], legacy[key.replace("qkv", "kv")] = value[:32], value[32:]
        else:
            legacy[key] = value
    fuse_qkv_keys(legacy, own)
    assert legacy.keys() == own.keys() and all(torch.equal(legacy[k], own[k]) for k in own)

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
