"""Module 05 (tinytorch.nn.losses): every loss through gradcheck, values and gradients against PyTorch, the refusals."""
import re

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinytorch.core.autograd import gradcheck
from tinytorch.core.tensor import Tensor
from tinytorch.nn.layers import Module
from tinytorch.nn.losses import (BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, binary_cross_entropy_with_logits,
                                 cross_entropy, mse_loss)

REDUCTIONS = ("mean", "sum", "none")
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def leaf(array, dtype=np.float64):
    return Tensor(np.asarray(array, dtype=dtype), requires_grad=True)


def classification_batch(seed, n, c, scale=3.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)) * scale, rng.integers(0, c, size=n)


def binary_batch(seed, shape, scale=4.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) * scale, rng.random(shape)


# --- gradcheck on every element (float64) -----------------------------------------------------

@given(shape=shapes, seed=st.integers(0, 2**16), reduction=st.sampled_from(REDUCTIONS))
def test_mse_gradcheck(shape, seed, reduction):
    rng = np.random.default_rng(seed)
    gradcheck(lambda p, t: mse_loss(p, t, reduction), leaf(rng.standard_normal(shape)), leaf(rng.standard_normal(shape)),
              name=f"mse_loss[{reduction}]")


@given(n=st.integers(1, 5), c=st.integers(1, 6), seed=st.integers(0, 2**16), reduction=st.sampled_from(REDUCTIONS))
def test_cross_entropy_gradcheck(n, c, seed, reduction):
    logits, targets = classification_batch(seed, n, c)
    gradcheck(lambda x: cross_entropy(x, targets, reduction), leaf(logits), name=f"cross_entropy[{reduction}]")


@given(shape=shapes, seed=st.integers(0, 2**16), reduction=st.sampled_from(REDUCTIONS))
def test_bce_with_logits_gradcheck(shape, seed, reduction):
    logits, targets = binary_batch(seed, shape)
    gradcheck(lambda x, y: binary_cross_entropy_with_logits(x, y, reduction), leaf(logits), leaf(targets),
              name=f"binary_cross_entropy_with_logits[{reduction}]")


def test_bce_with_logits_gradcheck_at_zero_and_far_logits():
    """The op's own rule is smooth where max(x, 0) and |x| have kinks, and exact far out."""
    logits = leaf([0.0, -0.0, 1e-9, -30.0, 30.0, 200.0])
    gradcheck(lambda x, y: binary_cross_entropy_with_logits(x, y, "none"), logits, leaf([0.0, 1.0, 0.5, 0.3, 0.7, 0.0]))


def test_losses_through_modules_gradcheck():
    logits, targets = classification_batch(1, 4, 3)
    gradcheck(lambda x: CrossEntropyLoss("sum")(x, targets), leaf(logits))
    gradcheck(lambda p, t: MSELoss()(p, t), leaf(logits), leaf(logits[::-1].copy()))
    gradcheck(lambda x, y: BCEWithLogitsLoss("none")(x, y), leaf(logits), leaf(np.full((4, 3), 0.25)))


# --- values and gradients against PyTorch -----------------------------------------------------

def check_against_torch(torch, ours, theirs, inputs, dtype=np.float64, rtol=1e-10, atol=1e-12):
    """Compare loss values and the gradients of every float input with PyTorch's."""
    inputs = [x.astype(dtype) if x.dtype.kind == "f" else x for x in inputs]
    mine = [leaf(x, dtype) if x.dtype.kind == "f" else x for x in inputs]
    out = ours(*mine)
    out.backward(np.ones(out.shape, dtype=out.dtype))
    torch_inputs = [torch.tensor(x, requires_grad=x.dtype.kind == "f") for x in inputs]
    expected = theirs(*torch_inputs)
    expected.backward(torch.ones_like(expected))
    assert out.dtype == dtype and out.shape == tuple(expected.shape)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=rtol, atol=atol)
    for x, tx in zip(mine, torch_inputs):
        if tx.requires_grad:
            assert x.grad.dtype == dtype
            np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=rtol, atol=atol)


@given(shape=shapes, seed=st.integers(0, 2**16), reduction=st.sampled_from(REDUCTIONS))
def test_mse_matches_torch(torch, shape, seed, reduction):
    rng = np.random.default_rng(seed)
    check_against_torch(torch, lambda p, t: mse_loss(p, t, reduction),
                        lambda p, t: torch.nn.functional.mse_loss(p, t, reduction=reduction),
                        [rng.standard_normal(shape), rng.standard_normal(shape)])


@given(n=st.integers(1, 6), c=st.integers(1, 7), seed=st.integers(0, 2**16), reduction=st.sampled_from(REDUCTIONS),
       scale=st.sampled_from([0.1, 3.0, 100.0, 3000.0]))
def test_cross_entropy_matches_torch(torch, n, c, seed, reduction, scale):
    logits, targets = classification_batch(seed, n, c, scale)
    check_against_torch(torch, lambda x, y: cross_entropy(x, y, reduction),
                        lambda x, y: torch.nn.functional.cross_entropy(x, y, reduction=reduction),
                        [logits, targets], rtol=1e-9, atol=1e-9)


@given(shape=shapes, seed=st.integers(0, 2**16), reduction=st.sampled_from(REDUCTIONS),
       scale=st.sampled_from([0.1, 4.0, 100.0, 3000.0]))
def test_bce_with_logits_matches_torch(torch, shape, seed, reduction, scale):
    logits, targets = binary_batch(seed, shape, scale)
    check_against_torch(torch, lambda x, y: binary_cross_entropy_with_logits(x, y, reduction),
                        lambda x, y: torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction=reduction),
                        [logits, targets], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["mse", "cross_entropy", "bce"])
def test_float32_losses_match_torch_and_stay_float32(torch, name):
    logits, targets = classification_batch(2, 8, 5, scale=50.0)
    bits = (np.random.default_rng(3).random((8, 5)) > 0.5).astype(np.float64)
    cases = {
        "mse": (mse_loss, torch.nn.functional.mse_loss, [logits, logits[::-1].copy()]),
        "cross_entropy": (cross_entropy, torch.nn.functional.cross_entropy, [logits, targets]),
        "bce": (binary_cross_entropy_with_logits, torch.nn.functional.binary_cross_entropy_with_logits, [logits, bits]),
    }
    ours, theirs, inputs = cases[name]
    check_against_torch(torch, ours, theirs, inputs, dtype=np.float32, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_stable_where_naive_log_softmax_is_not(torch, dtype):
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 120.0, -5.0], [-800.0, -900.0, -1000.0]])
    targets = np.array([2, 0, 1])
    x = leaf(logits, dtype)
    loss = cross_entropy(x, targets, reduction="none")
    loss.sum().backward()
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(targets), reduction="none")
    assert np.all(np.isfinite(loss.data)) and np.all(np.isfinite(x.grad.data))
    np.testing.assert_allclose(loss.data, expected.numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.data, [[1, 0, -1], [-1, 1, 0], [1, -1, 0]], atol=1e-6)


def test_module_classes_are_modules_that_match_the_functions():
    logits, targets = classification_batch(4, 5, 3)
    x = Tensor(logits)
    for reduction in REDUCTIONS:
        pairs = [(CrossEntropyLoss(reduction)(x, targets), cross_entropy(x, targets, reduction)),
                 (MSELoss(reduction)(x, x * 2.0), mse_loss(x, x * 2.0, reduction)),
                 (BCEWithLogitsLoss(reduction)(x, x.exp() / (x.exp() + 1.0)),
                  binary_cross_entropy_with_logits(x, x.exp() / (x.exp() + 1.0), reduction))]
        for mine, reference in pairs:
            np.testing.assert_array_equal(mine.data, reference.data)
    for cls in (MSELoss, CrossEntropyLoss, BCEWithLogitsLoss):
        loss = cls()
        assert isinstance(loss, Module) and list(loss.parameters()) == [] and loss.reduction == "mean"
        with pytest.raises(ValueError, match="'avg'"):
            cls(reduction="avg")


# --- refusals ----------------------------------------------------------------------------------

def test_mse_refuses_shapes_that_only_broadcast():
    with pytest.raises(ValueError, match=r"\(4, 1\).*\(4,\)"):
        mse_loss(Tensor(np.zeros((4, 1))), Tensor(np.zeros(4)))
    with pytest.raises(ValueError, match="reduction"):
        mse_loss(Tensor(np.zeros(2)), np.zeros(2), reduction="avg")


@pytest.mark.parametrize("targets, words", [
    (np.array([0, 3]), [r"\[0, 3\)", r"\(2, 3\)", r"\(2,\)"]),
    (np.array([-1, 0]), [r"\(2, 3\)", "-1"]),
    (np.array([0, 1, 2]), [r"\(2, 3\)", r"\(3,\)"]),
    (np.array([[0], [1]]), [r"\(2, 3\)", r"\(2, 1\)"]),
])
def test_cross_entropy_refuses_bad_targets_naming_both_shapes(targets, words):
    with pytest.raises(ValueError) as error:
        cross_entropy(Tensor(np.zeros((2, 3))), targets)
    for word in words:
        assert re.search(word, str(error.value)), (word, str(error.value))


def test_cross_entropy_refuses_float_targets_and_3d_logits():
    with pytest.raises(TypeError, match="int"):
        cross_entropy(Tensor(np.zeros((2, 3))), Tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(2, 4, 3\)"):
        cross_entropy(Tensor(np.zeros((2, 4, 3))), np.zeros((2, 4), dtype=np.int64))


def test_bce_refuses_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(3, 1\).*\(3,\)"):
        binary_cross_entropy_with_logits(Tensor(np.zeros((3, 1))), np.zeros(3))


def test_constant_targets_take_the_prediction_dtype():
    pred = Tensor(np.ones((2, 2)), dtype=np.float32)
    assert mse_loss(pred, np.zeros((2, 2))).dtype == np.float32
    assert binary_cross_entropy_with_logits(pred, np.zeros((2, 2), dtype=np.int64)).dtype == np.float32
    assert cross_entropy(pred, np.array([0, 1], dtype=np.int32)).dtype == np.float32


def test_bce_keeps_tiny_losses_accurate():
    """A confident right answer costs log(1 + e^-x): log1p keeps its digits where 1 + e^-x rounds."""
    x = np.array([20.0, 30.0, 40.0, -20.0, -30.0])
    y = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    out = binary_cross_entropy_with_logits(Tensor(x), Tensor(y), reduction="none")
    np.testing.assert_allclose(out.data, np.log1p(np.exp(-np.abs(x))), rtol=1e-12, atol=0)
