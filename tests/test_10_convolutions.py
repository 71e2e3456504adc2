"""Module 10 (tinytorch.nn.conv): conv2d, max_pool2d and avg_pool2d through gradcheck on every element with
hypothesis-drawn shapes, strides and paddings; values and gradients against PyTorch; the naive loops against
the fast path; the layers' initialisation, dtypes and FLOP rule."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinytorch.core.autograd import BACKWARD_RULES, GradcheckError, gradcheck
from tinytorch.core.tensor import Tensor
from tinytorch.nn.conv import (AvgPool2d, Conv2d, MaxPool2d, avg_pool2d, conv2d, conv2d_naive, conv_output_size,
                               im2col, max_pool2d)


def leaf(array):
    return Tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


@st.composite
def conv_cases(draw):
    """(x shape, weight shape, stride, padding, bias?, chunk_bytes): every combination that has an output."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    height = draw(st.integers(max(1, kh - 2 * padding[0]), 6))
    width = draw(st.integers(max(1, kw - 2 * padding[1]), 6))
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (n, c, height, width), (o, c, kh, kw), stride, padding, draw(st.booleans()), draw(st.sampled_from([None, 1]))


@st.composite
def pool_cases(draw):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(kernel[0], 6)), draw(st.integers(kernel[1], 6)))
    return shape, kernel, stride


def arrays(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


# --- gradcheck on every element -------------------------------------------------------------------

@given(case=conv_cases(), seed=st.integers(0, 2**16))
def test_conv2d_gradcheck(case, seed):
    x_shape, w_shape, stride, padding, with_bias, chunk = case
    x, w, b = arrays(seed, x_shape, w_shape, w_shape[:1])
    inputs = [leaf(x), leaf(w)] + ([leaf(b)] if with_bias else [])
    f = lambda *t: conv2d(*t[:2], t[2] if with_bias else None, stride=stride, padding=padding, chunk_bytes=chunk)
    assert gradcheck(f, *inputs, name=f"conv2d stride={stride} padding={padding}")


@given(case=pool_cases(), seed=st.integers(0, 2**16))
def test_pools_gradcheck(case, seed):
    shape, kernel, stride = case
    # distinct values spaced apart, so no two elements of a window tie and finite differences never cross a max
    x = np.random.default_rng(seed).permutation(math.prod(shape)).reshape(shape) * 0.1
    assert gradcheck(lambda t: max_pool2d(t, kernel, stride), leaf(x), name="max_pool2d")
    assert gradcheck(lambda t: avg_pool2d(t, kernel, stride), leaf(x), name="avg_pool2d")


def test_gradcheck_rejects_a_conv_backward_that_ignores_the_stride(monkeypatch):
    """Without PyTorch, gradcheck alone catches a wrong rule: here one that puts gradients back at stride 1."""
    rule = BACKWARD_RULES[conv2d]

    def stride_one(grad, out, x, weight, bias=None, stride=(1, 1), padding=(0, 0), chunk_bytes=None):
        return rule(grad, out, x, weight, bias, stride=stride, padding=padding, chunk_bytes=chunk_bytes) \
            if stride == (1, 1) else tuple(np.zeros_like(p.data) for p in (x, weight, bias) if p is not None)
    monkeypatch.setitem(BACKWARD_RULES, conv2d, stride_one)
    x, w = arrays(0, (1, 1, 5, 5), (1, 1, 3, 3))
    with pytest.raises(GradcheckError):
        gradcheck(lambda a, b: conv2d(a, b, stride=2), leaf(x), leaf(w))


# --- against PyTorch ---------------------------------------------------------------------------------

@given(case=conv_cases(), seed=st.integers(0, 2**16))
def test_conv2d_matches_pytorch(torch, case, seed):
    x_shape, w_shape, stride, padding, with_bias, chunk = case
    x, w, b, g = arrays(seed, x_shape, w_shape, w_shape[:1], (1,))
    ours = [leaf(x), leaf(w), leaf(b) if with_bias else None]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    out = conv2d(*ours, stride=stride, padding=padding, chunk_bytes=chunk)
    ref = torch.nn.functional.conv2d(theirs[0], theirs[1], theirs[2] if with_bias else None, stride=stride, padding=padding)
    assert out.shape == tuple(ref.shape)
    assert np.allclose(out.data, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    weights = np.random.default_rng(seed + 1).standard_normal(out.shape)
    out.backward(weights)
    (ref * torch.tensor(weights)).sum().backward()
    for mine, reference in zip(ours, theirs):
        if mine is not None:
            assert np.allclose(mine.grad.data, reference.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg"])
@given(case=pool_cases(), seed=st.integers(0, 2**16))
def test_pools_match_pytorch(torch, kind, case, seed):
    shape, kernel, stride = case
    x = np.random.default_rng(seed).standard_normal(shape)
    ours, theirs = leaf(x), torch.tensor(x, requires_grad=True)
    out = (max_pool2d if kind == "max" else avg_pool2d)(ours, kernel, stride)
    ref = getattr(torch.nn.functional, f"{kind}_pool2d")(theirs, kernel, stride)
    assert np.allclose(out.data, ref.detach().numpy(), rtol=1e-12)
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(weights)
    (ref * torch.tensor(weights)).sum().backward()
    assert np.allclose(ours.grad.data, theirs.grad.numpy(), rtol=1e-12)


def test_max_pool_ties_go_to_one_element_as_in_pytorch(torch):
    x = np.ones((1, 2, 4, 6))
    x[0, 1, :2, :2] = [[0.5, 2.0], [2.0, 2.0]]
    ours, theirs = leaf(x), torch.tensor(x, requires_grad=True)
    max_pool2d(ours, 2).sum().backward()
    torch.nn.functional.max_pool2d(theirs, 2).sum().backward()
    assert np.array_equal(ours.grad.data, theirs.grad.numpy())
    assert ours.grad.data.sum() == 2 * 2 * 3, "one gradient per window, however many ties"


def test_conv2d_layer_matches_pytorch_module(torch):
    ours = Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64)
    theirs = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data))
        theirs.bias.copy_(torch.tensor(ours.bias.data))
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9))
    assert np.allclose(ours(Tensor(x)).data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10)


# --- behaviour without an oracle ---------------------------------------------------------------------

@given(case=conv_cases(), seed=st.integers(0, 2**16))
def test_naive_loops_and_im2col_agree(case, seed):
    x_shape, w_shape, stride, padding, with_bias, chunk = case
    x, w, b = arrays(seed, x_shape, w_shape, w_shape[:1])
    bias = b if with_bias else None
    fast = conv2d(Tensor(x), Tensor(w), Tensor(b) if with_bias else None, stride=stride, padding=padding, chunk_bytes=chunk)
    assert np.allclose(fast.data, conv2d_naive(x, w, bias, stride=stride, padding=padding))


def test_im2col_layout_and_sizes():
    x = np.arange(2 * 3 * 5 * 5, dtype=np.float32).reshape(2, 3, 5, 5)
    cols = im2col(x, 3, stride=2, padding=1)
    assert cols.shape == (27, 2 * 3 * 3) and cols.dtype == np.float32
    assert np.array_equal(cols[:, 4], x[0, :, 1:4, 1:4].reshape(-1)), "column (n=0, i=1, j=1) is the patch at (1, 1)"
    assert conv_output_size(32, 5) == 28 and conv_output_size(5, 2, stride=2) == 2
    with pytest.raises(ValueError):
        conv_output_size(2, 3)


def test_float32_stays_float32_and_the_first_layer_gets_no_input_gradient():
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    conv = Conv2d(3, 4, 3)
    y = max_pool2d(conv(x), 2)
    assert y.dtype == np.float32 and avg_pool2d(y, 3).dtype == np.float32
    y.sum().backward()
    assert conv.weight.grad.dtype == np.float32 and conv.weight.grad.shape == (4, 3, 3, 3)
    assert x.grad is None


def test_conv2d_init_bound_and_layers():
    conv = Conv2d(6, 16, 5)
    bound = 1 / math.sqrt(6 * 25)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    assert abs(conv.weight.data.std() - bound / math.sqrt(3)) < 0.1 * bound, "uniform(-b, b) has std b / sqrt(3)"
    assert sorted(conv.state_dict()) == ["bias", "weight"]
    assert MaxPool2d(3, stride=2)(Tensor(np.zeros((1, 1, 7, 7)))).shape == (1, 1, 3, 3)
    assert AvgPool2d(2)(Tensor(np.zeros((1, 1, 5, 5)))).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError):
        conv(Tensor(np.zeros((1, 3, 8, 8))))


def test_lenet5_flops_and_profile():
    from tinytorch.nn.layers import Flatten, Linear, ReLU, Sequential
    from tinytorch.profile import Profiler, count_flops
    lenet = Sequential(Conv2d(3, 6, 5), ReLU(), MaxPool2d(2), Conv2d(6, 16, 5), ReLU(), MaxPool2d(2), Flatten(),
                       Linear(400, 120), ReLU(), Linear(120, 84), ReLU(), Linear(84, 10))
    assert sum(p.size for p in lenet.parameters()) == 62_006, "the LeNet-5 of perf-anchors §3b"
    x = Tensor(np.zeros((2, 3, 32, 32), dtype=np.float32))
    flops = count_flops(lenet, x)
    assert flops.by_layer["layers.0"] == 2 * 2 * 6 * 28 * 28 * 75
    assert flops.by_layer["layers.3"] == 2 * 2 * 16 * 10 * 10 * 150
    with Profiler() as prof:
        lenet(x).sum().backward()
    assert prof.by_op["conv2d"].flops == flops.by_layer["layers.0"] + flops.by_layer["layers.3"]
    assert prof.by_op["max_pool2d"].calls == 2 and "conv2d_backward" in prof.by_op
