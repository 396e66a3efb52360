"""The preallocated KV cache and the fused q/k/v projection."""

import pytest
import torch

from th1nker.omni.layers import Attention, KVCache
from th1nker.omni.thinker import ThinkerConfig, ThinkerLM


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
    lm.new_cache = lambda capacity=None: caches.append(original(capacity)) or caches[-1]
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
