"""Module 15 (tinytorch.nn.attention): attention and multi-head attention through gradcheck on every element,
values and gradients against PyTorch's scaled_dot_product_attention and nn.MultiheadAttention with copied
weights, masks without NaN, dropout, and the KV cache against full recomputation."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinytorch.core.autograd import GradcheckError, backward_rule, gradcheck, no_grad
from tinytorch.core.tensor import Tensor
from tinytorch.nn.attention import (KVCache, MultiHeadAttention, causal_mask, merge_heads,
                                    scaled_dot_product_attention, scaled_dot_product_attention_backward, split_heads)


def leaf(rng, *shape, scale=1.0):
    return Tensor(rng.standard_normal(shape) * scale, requires_grad=True)


def mha64(embed_dim=8, num_heads=2, bias=True, seed=0):
    return MultiHeadAttention(embed_dim, num_heads, bias=bias, dtype=np.float64, rng=np.random.default_rng(seed))


# --- gradcheck on every element (float64) -----------------------------------------------------------------
@given(batch=st.lists(st.integers(1, 2), max_size=2), queries=st.integers(1, 4), keys=st.integers(1, 4),
       width=st.integers(1, 4), value_width=st.integers(1, 3), causal=st.booleans(), seed=st.integers(0, 2**16))
def test_attention_gradcheck_on_every_element(batch, queries, keys, width, value_width, causal, seed):
    rng = np.random.default_rng(seed)
    keys = max(keys, queries) if causal else keys
    q, k, v = leaf(rng, *batch, queries, width), leaf(rng, *batch, keys, width), leaf(rng, *batch, keys, value_width)
    assert gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, is_causal=causal), q, k, v)


def test_attention_gradcheck_with_padding_broadcast_and_dropout():
    rng = np.random.default_rng(1)
    padding = np.array([True, True, False, True, False])
    assert gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=padding),
                     leaf(rng, 2, 3, 4), leaf(rng, 2, 5, 4), leaf(rng, 2, 5, 3))
    assert gradcheck(scaled_dot_product_attention, leaf(rng, 2, 3, 2, 4), leaf(rng, 2, 1, 5, 4), leaf(rng, 1, 1, 5, 3))
    dropped = lambda q, k, v: scaled_dot_product_attention(q, k, v, dropout_p=0.4, rng=np.random.default_rng(7))
    assert gradcheck(dropped, leaf(rng, 2, 4, 3), leaf(rng, 2, 6, 3), leaf(rng, 2, 6, 2))


def test_heads_gradcheck():
    rng = np.random.default_rng(2)
    assert gradcheck(lambda x: merge_heads(split_heads(x, 3) * split_heads(x, 3)), leaf(rng, 2, 3, 6))


@pytest.mark.parametrize("bias", [True, False])
def test_multi_head_attention_gradcheck_input_and_every_parameter(bias):
    mha = mha64(bias=bias)
    x = leaf(np.random.default_rng(3), 2, 3, 8)
    assert gradcheck(lambda x, *params: mha(x, is_causal=True), x, *mha.parameters())


def test_gradcheck_catches_a_broken_attention_rule():
    """Without PyTorch: a rule that forgets the 1/sqrt(d) scale of grad_q and grad_k is rejected."""
    def unscaled(grad, out, q, k, v, weights, drop, scale):
        return scaled_dot_product_attention_backward(grad, out, q, k, v, weights, drop, 1.0)

    rng = np.random.default_rng(4)
    backward_rule(scaled_dot_product_attention)(unscaled)
    try:
        with pytest.raises(GradcheckError):
            gradcheck(scaled_dot_product_attention, leaf(rng, 3, 4), leaf(rng, 3, 4), leaf(rng, 3, 2))
    finally:
        backward_rule(scaled_dot_product_attention)(scaled_dot_product_attention_backward)


# --- masks, dtypes, errors ----------------------------------------------------------------------------------
def test_causal_mask_shapes():
    assert np.array_equal(causal_mask(3), np.tril(np.ones((3, 3), dtype=bool)))
    assert np.array_equal(causal_mask(2, 4), [[1, 1, 1, 0], [1, 1, 1, 1]])
    with pytest.raises(ValueError, match="cannot be the last positions"):
        causal_mask(4, 2)


def test_fully_masked_rows_give_zeros_not_nan():
    rng = np.random.default_rng(5)
    q, k, v = leaf(rng, 3, 4), leaf(rng, 5, 4), leaf(rng, 5, 2)
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    out = scaled_dot_product_attention(q, k, v, mask=mask)
    out.backward(np.ones_like(out.data))
    assert np.array_equal(out.data[1], [0, 0]) and not np.isnan(out.data).any()
    assert all(np.isfinite(t.grad.data).all() for t in (q, k, v)) and np.array_equal(q.grad.data[1], np.zeros(4))


def test_float32_stays_float32_and_bad_inputs_are_refused():
    rng = np.random.default_rng(6)
    q, k, v = (Tensor(rng.standard_normal((2, 3, 4)), dtype=np.float32) for _ in range(3))
    assert scaled_dot_product_attention(q, k, v, is_causal=True).dtype == np.float32
    with pytest.raises(ValueError, match="same width"):
        scaled_dot_product_attention(q, Tensor(np.zeros((2, 3, 5))), v)
    with pytest.raises(TypeError, match="booleans"):
        scaled_dot_product_attention(q, k, v, mask=np.ones((3, 3)))
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)


# --- against PyTorch ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["plain", "causal", "padding", "cached-causal"])
def test_attention_matches_torch_sdpa(torch, case):
    rng = np.random.default_rng(8)
    queries = 2 if case == "cached-causal" else 5
    q, k, v = leaf(rng, 2, 3, queries, 4), leaf(rng, 2, 3, 5, 4), leaf(rng, 2, 3, 5, 6)
    mask = {"padding": np.array([[True, False, True, True, False]]), "cached-causal": causal_mask(2, 5)}.get(case)
    ours = scaled_dot_product_attention(q, k, v, mask=mask, is_causal=case == "causal")
    upstream = rng.standard_normal(ours.shape)
    ours.backward(upstream)
    tq, tk, tv = (torch.tensor(t.data, requires_grad=True) for t in (q, k, v))
    theirs = torch.nn.functional.scaled_dot_product_attention(
        tq, tk, tv, attn_mask=None if mask is None else torch.tensor(mask), is_causal=case == "causal")
    theirs.backward(torch.tensor(upstream))
    assert np.allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
    for mine, their in zip((q, k, v), (tq, tk, tv)):
        assert np.allclose(mine.grad.data, their.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_multi_head_attention_matches_torch_with_copied_weights(torch, bias):
    ours = mha64(embed_dim=12, num_heads=3, bias=bias, seed=9)
    theirs = torch.nn.MultiheadAttention(12, 3, bias=bias, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.tensor(ours.qkv.weight.data.T))
        theirs.out_proj.weight.copy_(torch.tensor(ours.out.weight.data.T))
        if bias:
            theirs.in_proj_bias.copy_(torch.tensor(ours.qkv.bias.data))
            theirs.out_proj.bias.copy_(torch.tensor(ours.out.bias.data))
    rng = np.random.default_rng(10)
    x = leaf(rng, 2, 6, 12)
    out = ours(x, is_causal=True)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    tx = torch.tensor(x.data, requires_grad=True)
    blocked = torch.tensor(~causal_mask(6))  # nn.MultiheadAttention's boolean mask marks what is NOT allowed
    expected, _ = theirs(tx, tx, tx, attn_mask=blocked, need_weights=False)
    expected.backward(torch.tensor(upstream))
    assert np.allclose(out.data, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert np.allclose(x.grad.data, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert np.allclose(ours.qkv.weight.grad.data, theirs.in_proj_weight.grad.numpy().T, rtol=1e-9, atol=1e-12)
    assert np.allclose(ours.out.weight.grad.data, theirs.out_proj.weight.grad.numpy().T, rtol=1e-9, atol=1e-12)
    if bias:
        assert np.allclose(ours.qkv.bias.grad.data, theirs.in_proj_bias.grad.numpy(), rtol=1e-9, atol=1e-12)


# --- KV cache ---------------------------------------------------------------------------------------------------
@given(prompt=st.integers(1, 4), new=st.integers(0, 4), seed=st.integers(0, 2**16))
def test_kv_cache_equals_recomputation(prompt, new, seed):
    rng = np.random.default_rng(seed)
    mha = mha64(seed=seed).eval()
    x = Tensor(rng.standard_normal((2, prompt + new, 8)))
    with no_grad():
        full = mha(x, is_causal=True).data
        cache = KVCache(max_len=prompt + new)
        pieces = [mha(x[:, :prompt], is_causal=True, cache=cache).data]
        pieces += [mha(x[:, t:t + 1], is_causal=True, cache=cache).data for t in range(prompt, prompt + new)]
    assert cache.length == prompt + new
    assert np.allclose(np.concatenate(pieces, axis=1), full, rtol=1e-10, atol=1e-12)


def test_kv_cache_refuses_overflow_and_resets():
    cache = KVCache(max_len=3)
    k = Tensor(np.ones((1, 2, 2, 4)))
    cache.update(k, k)
    with pytest.raises(ValueError, match="exceed max_len 3"):
        cache.update(k, k)
    cache.reset()
    keys, values = cache.update(k, k)
    assert cache.length == 2 and keys.shape == (1, 2, 2, 4) and not keys.requires_grad
