import pytest
import torch
from torch import nn

from th1nker.omni.layers import (Attention, KVCache, MoE, RMSNorm, Rotary, SwiGLU, TransformerBlock,
                                 pop_aux_loss)




@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def test_rmsnorm_shape_and_scale():
    x = torch.randn(2, 5, 16) * 7
    y = RMSNorm(16)(x)
    assert y.shape == x.shape
    assert torch.allclose(y.pow(2).mean(-1), torch.ones(2, 5), atol=1e-4)


def test_rotary_offset_equals_slice_of_longer_rotation():
    rotary = Rotary(8)
    x = torch.randn(1, 2, 10, 8)
    assert torch.allclose(rotary(x[:, :, 6:], offset=6), rotary(x)[:, :, 6:], atol=1e-6)
    # A table grown later (past its first 64 rows) gives the same angles.
    long = torch.randn(1, 2, 300, 8)
    assert torch.allclose(rotary(long)[:, :, 290:], rotary(long[:, :, 290:], offset=290), atol=1e-5)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])  # MHA, GQA, MQA
def test_attention_shapes(kv_heads):
    attn = Attention(32, heads=4, kv_heads=kv_heads, causal=True)
    assert attn(torch.randn(2, 7, 32)).shape == (2, 7, 32)
    cross = Attention(32, heads=4, kv_heads=kv_heads, kv_dim=24, rotary=False)
    assert cross(torch.randn(2, 7, 32), context=torch.randn(2, 3, 24)).shape == (2, 7, 32)


def test_attention_rejects_bad_heads():
    with pytest.raises(ValueError):
        Attention(32, heads=4, kv_heads=3)


@pytest.mark.parametrize("causal", [False, True])
def test_padding_mask_blocks_keys(causal):
    attn = Attention(16, heads=2, causal=causal)
    x = torch.randn(1, 6, 16)
    mask = torch.tensor([[True, False, False, True, True, True]])
    changed = x.clone()
    changed[:, 1:3] = torch.randn(1, 2, 16) * 10
    real = mask[0]
    assert torch.allclose(attn(x, mask=mask)[:, real], attn(changed, mask=mask)[:, real], atol=1e-6)
    assert not torch.allclose(attn(x)[:, 3:], attn(changed)[:, 3:], atol=1e-3)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_kv_cache_matches_full_causal_forward(kv_heads):
    attn = Attention(32, heads=4, kv_heads=kv_heads, causal=True).eval()
    x = torch.randn(2, 9, 32)
    full = attn(x)
    cache = KVCache()
    steps = [attn(x[:, :5], cache=cache)] + [attn(x[:, i:i + 1], cache=cache) for i in range(5, 9)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    assert cache.length == 9


def test_kv_cache_with_padding_mask_over_cached_keys():
    attn = Attention(16, heads=2, causal=True).eval()
    x = torch.randn(1, 6, 16)
    mask = torch.tensor([[False, True, True, True, True, True]])
    full = attn(x, mask=mask)
    cache = KVCache()
    first = attn(x[:, :4], mask=mask[:, :4], cache=cache)
    rest = [attn(x[:, i:i + 1], mask=mask[:, :i + 1], cache=cache) for i in range(4, 6)]
    assert torch.allclose(torch.cat([first, *rest], dim=1)[:, 1:], full[:, 1:], atol=1e-5)


def test_swiglu_and_block_shapes():
    assert SwiGLU(16, 32)(torch.randn(3, 16)).shape == (3, 16)
    block = TransformerBlock(16, 2, 32, causal=True, cross=True)
    assert block(torch.randn(2, 5, 16), context=torch.randn(2, 3, 16)).shape == (2, 5, 16)


def test_moe_shape_aux_loss_and_spread():
    moe = MoE(32, 64, experts=4, top_k=2)
    x = torch.randn(4, 64, 32)
    y = moe(x)
    assert y.shape == x.shape
    assert torch.isfinite(moe.aux_loss) and moe.aux_loss > 0
    chosen = moe.router(x.reshape(-1, 32)).topk(2, dim=-1).indices
    assert torch.bincount(chosen.flatten(), minlength=4).min() > 0
    y.sum().backward()
    assert moe.gate_up.grad.abs().sum() > 0 and moe.router.weight.grad.abs().sum() > 0


def test_moe_matches_dense_per_token_computation():
    moe = MoE(8, 16, experts=3, top_k=2)
    x = torch.randn(10, 8)
    probs = moe.router(x).softmax(-1)
    weights, chosen = probs.topk(2, dim=-1)
    weights = weights / weights.sum(-1, keepdim=True)
    expected = torch.zeros_like(x)
    for n in range(10):
        for w, e in zip(weights[n], chosen[n]):
            gate, up = (x[n] @ moe.gate_up[e]).chunk(2)
            expected[n] += w * ((nn.functional.silu(gate) * up) @ moe.down[e])
    assert torch.allclose(moe(x), expected, atol=1e-5)


def test_aux_loss_sums_over_model_and_is_taken_once():
    model = nn.Sequential(*(TransformerBlock(16, 2, 32, experts=4) for _ in range(2)))
    assert pop_aux_loss(model) is None
    model(torch.randn(2, 8, 16))
    expected = model[0].mlp.aux_loss + model[1].mlp.aux_loss
    total = pop_aux_loss(model)
    assert torch.allclose(total, expected) and total.requires_grad
    assert pop_aux_loss(model) is None  # taken: no stale loss is left for a later window
    assert pop_aux_loss(TransformerBlock(16, 2, 32)) is None
