"""Module 03 (tinytorch.nn.activations): every activation through gradcheck, values and gradients against
PyTorch, numerical stability at extreme inputs, dtypes, and the axis refusals."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.autograd import gradcheck
from tinytorch.core.tensor import Tensor
from tinytorch.nn.activations import gelu, log_softmax, normal_cdf, relu, sigmoid, softmax, tanh

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
axis_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)

# name -> (ours, PyTorch's, op name recorded on the result)
ELEMENTWISE = {
    "relu": (relu, lambda t, F: F.relu(t)),
    "sigmoid": (sigmoid, lambda t, F: t.sigmoid()),
    "tanh": (tanh, lambda t, F: t.tanh()),
    "gelu": (gelu, lambda t, F: F.gelu(t, approximate="none")),
}
ALONG_AXIS = {
    "softmax": (softmax, lambda t, axis, F: F.softmax(t, dim=axis)),
    "log_softmax": (log_softmax, lambda t, axis, F: F.log_softmax(t, dim=axis)),
}


def leaf(array):
    return Tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def random_input(seed, shape, scale=3.0, away_from_zero=False):
    """Standard-normal values times `scale`; `away_from_zero` keeps them off ReLU's kink (|x| >= 0.1)."""
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    return np.where(np.abs(x) < 0.1, np.copysign(0.1, x) + x, x) if away_from_zero else x


# --- gradcheck on every element (float64) -----------------------------------------------------

@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_elementwise_gradcheck(name, shape, seed):
    function, _ = ELEMENTWISE[name]
    assert gradcheck(function, leaf(random_input(seed, shape, away_from_zero=name == "relu")), name=name)


@pytest.mark.parametrize("name", sorted(ALONG_AXIS))
@given(data=st.data(), shape=axis_shapes, seed=st.integers(0, 2**16))
def test_softmax_family_gradcheck_along_any_axis(name, data, shape, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    function, _ = ALONG_AXIS[name]
    assert gradcheck(lambda t: function(t, axis=axis), leaf(random_input(seed, shape)), name=f"{name}[axis={axis}]")


def test_gelu_gradcheck_across_its_whole_range():
    """Forward and backward share one Phi: they agree at the dip (-0.75), near 0 and far in both tails."""
    x = leaf(np.concatenate([np.linspace(-12, 12, 121), [-0.7518, -1e-8, 0.0, 1e-8, 30.0, -30.0]]))
    assert gradcheck(gelu, x, name="gelu")


def test_sigmoid_gradcheck_in_the_tails():
    assert gradcheck(sigmoid, leaf([-30.0, -12.0, -5.0, 5.0, 12.0, 30.0]), name="sigmoid")


# --- values and gradients against PyTorch -----------------------------------------------------

def torch_pair(torch, array):
    return leaf(array), torch.tensor(array, requires_grad=True)


def assert_matches(torch, ours, theirs, x, reference, seed=0, rtol=1e-10, atol=1e-12):
    weights = np.random.default_rng(seed).standard_normal(theirs.shape)
    ours.backward(weights)
    (theirs * torch.tensor(weights)).sum().backward()
    assert np.allclose(ours.data, theirs.detach().numpy(), rtol=rtol, atol=atol)
    assert np.allclose(x.grad.data, reference.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("scale", [1.0, 5.0, 40.0])
def test_elementwise_values_and_gradients_match_pytorch(torch, name, scale):
    function, theirs = ELEMENTWISE[name]
    x, reference = torch_pair(torch, random_input(1, (3, 4, 5), scale=scale, away_from_zero=True))
    assert_matches(torch, function(x), theirs(reference, torch.nn.functional), x, reference)


@pytest.mark.parametrize("name", sorted(ALONG_AXIS))
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_softmax_family_values_and_gradients_match_pytorch(torch, name, axis, scale):
    function, theirs = ALONG_AXIS[name]
    x, reference = torch_pair(torch, random_input(2, (3, 4, 5), scale=scale))
    assert_matches(torch, function(x, axis=axis), theirs(reference, axis, torch.nn.functional), x, reference,
                   rtol=1e-9, atol=1e-11)


def test_float32_values_match_pytorch_float32(torch):
    array = random_input(3, (64, 33), scale=4.0).astype(np.float32)
    F = torch.nn.functional
    reference = torch.tensor(array, dtype=torch.float32)
    for ours, theirs in [(relu(Tensor(array)), F.relu(reference)), (sigmoid(Tensor(array)), reference.sigmoid()),
                         (tanh(Tensor(array)), reference.tanh()), (gelu(Tensor(array)), F.gelu(reference)),
                         (softmax(Tensor(array)), F.softmax(reference, dim=-1)),
                         (log_softmax(Tensor(array), axis=0), F.log_softmax(reference, dim=0))]:
        assert ours.dtype == np.float32
        assert np.allclose(ours.data, theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_relu_gradient_at_zero_is_zero_like_pytorch(torch):
    x, reference = torch_pair(torch, np.array([-1.0, -0.0, 0.0, 1e-300, 2.0]))
    assert_matches(torch, relu(x), torch.nn.functional.relu(reference), x, reference)
    assert np.array_equal(x.grad.data != 0, [False, False, False, True, True])


# --- stability ---------------------------------------------------------------------------------

def test_softmax_and_log_softmax_never_overflow():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for dtype in (np.float32, np.float64):
            logits = Tensor(np.array([[1000.0, 0.0, -1000.0], [90.0, 89.0, 88.0], [-500.0, -500.0, -500.0]], dtype=dtype))
            probs, logs = softmax(logits), log_softmax(logits)
            assert probs.dtype == dtype and logs.dtype == dtype
            assert np.all(np.isfinite(probs.data)) and np.all(np.isfinite(logs.data))
            assert np.allclose(probs.data[0], [1, 0, 0]) and np.allclose(probs.data[2], 1 / 3)
            assert np.allclose(logs.data[0], [0, -1000, -2000])
            e = np.exp([0.0, -1.0, -2.0])
            assert np.allclose(probs.data[1], e / e.sum(), rtol=1e-6)


def test_softmax_is_shift_invariant_and_sums_to_one():
    x = random_input(4, (5, 7))
    assert np.allclose(softmax(Tensor(x + 700.0)).data, softmax(Tensor(x)).data)
    assert np.allclose(softmax(Tensor(x), axis=0).data.sum(axis=0), 1.0)
    assert np.allclose(np.exp(log_softmax(Tensor(x)).data).sum(axis=-1), 1.0)


def test_masked_logits_get_zero_probability():
    probs = softmax(Tensor([[0.0, -np.inf, 1.0]], dtype=np.float64))
    assert probs.data[0, 1] == 0 and np.isclose(probs.data.sum(), 1.0)


def test_sigmoid_is_stable_and_accurate_in_both_tails():
    x = np.array([-1000.0, -700.0, -40.0, -1e-3, 0.0, 1e-3, 40.0, 700.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(Tensor(x)).data
    exact = [1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v)) for v in x]
    assert np.allclose(s, exact, rtol=1e-13, atol=0)
    with np.errstate(over="raise", invalid="raise"):
        assert np.array_equal(sigmoid(Tensor([-1e4, 1e4])).data, [0, 1])


def test_normal_cdf_matches_math_erf_in_float64_and_float32():
    x = np.linspace(-40, 40, 16001)
    exact = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])
    assert np.max(np.abs(normal_cdf(x) - exact)) < 5e-12
    inner = np.abs(x) < 8
    assert np.max(np.abs(normal_cdf(x[inner]) / exact[inner] - 1)) < 1e-11, "relative accuracy in the left tail too"
    single = normal_cdf(x.astype(np.float32))
    assert single.dtype == np.float32 and np.max(np.abs(single - exact)) < 2e-7
    assert np.array_equal(normal_cdf(np.array([-np.inf, np.inf])), [0.0, 1.0]) and np.isnan(normal_cdf(np.array([np.nan])))[0]


def test_gelu_matches_the_erf_definition_exactly():
    x = np.linspace(-10, 10, 401)
    exact = [v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x]
    assert np.allclose(gelu(Tensor(x)).data, exact, rtol=1e-10, atol=1e-13)
    with np.errstate(over="raise", invalid="raise"):
        assert np.all(np.isfinite(gelu(Tensor([-1e30, -100.0, 100.0, 1e30])).data))


# --- structure, dtypes, errors -----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ELEMENTWISE) + sorted(ALONG_AXIS))
def test_each_activation_is_one_recorded_op_keeping_float32(name):
    function = {**ELEMENTWISE, **ALONG_AXIS}[name][0]
    x = Tensor(np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    out = function(x)
    assert out._op is function and out._parents == (x,), "forward and backward paired as one op"
    out.backward(np.ones((2, 3), dtype=np.float32))
    assert out.dtype == np.float32 and x.grad.dtype == np.float32
    assert not function(Tensor(x.data)).requires_grad, "no graph when no input needs a gradient"


@pytest.mark.parametrize("function", [softmax, log_softmax])
@pytest.mark.parametrize("axis", [2, -3, 1.0, None])
def test_softmax_refuses_an_axis_that_does_not_exist(function, axis):
    with pytest.raises(ValueError, match=rf"{function.__name__}: axis .* shape \(2, 3\)"):
        function(Tensor(np.zeros((2, 3))), axis=axis)


def test_values_and_gradients_at_hand_computed_points():
    """Closed forms at a few points, so a wrong forward or rule fails with or without PyTorch."""
    from tinytorch.core.autograd import backward
    x = leaf(np.array([-2.0, 0.0, 3.0]))
    cases = [
        (relu, [0.0, 0.0, 3.0], [0.0, 0.0, 1.0]),
        (sigmoid, 1 / (1 + np.exp([2.0, 0.0, -3.0])), None),
        (tanh, np.tanh([-2.0, 0.0, 3.0]), 1 - np.tanh([-2.0, 0.0, 3.0]) ** 2),
        (gelu, [-2.0 * 0.02275013194817921, 0.0, 3.0 * 0.9986501019683699], None),
    ]
    for function, value, slope in cases:
        x.grad = None
        out = function(x)
        np.testing.assert_allclose(out.data, value, rtol=1e-12, atol=1e-15, err_msg=function.__name__)
        backward(out.sum())
        if slope is None:  # sigmoid' = s (1 - s); gelu' checked by gradcheck above
            s = np.asarray(value)
            slope = s * (1 - s) if function is sigmoid else x.grad.data
        np.testing.assert_allclose(x.grad.data, slope, rtol=1e-12, atol=1e-15, err_msg=f"{function.__name__}'")
    z = leaf(np.array([[0.0, np.log(3.0)]]))
    np.testing.assert_allclose(softmax(z).data, [[0.25, 0.75]], rtol=1e-12)
    np.testing.assert_allclose(log_softmax(z).data, np.log([[0.25, 0.75]]), rtol=1e-12)
    backward(softmax(z), np.array([[1.0, 0.0]]))  # d s_0 / d z = s_0 (e_0 - s) = [0.1875, -0.1875]
    np.testing.assert_allclose(z.grad.data, [[0.1875, -0.1875]], rtol=1e-12)
    z.grad = None
    backward(log_softmax(z), np.array([[1.0, 0.0]]))  # d log s_0 / d z = e_0 - s = [0.75, -0.75]
    np.testing.assert_allclose(z.grad.data, [[0.75, -0.75]], rtol=1e-12)
