"""Module 01's operations and module 02's backward rules, checked as one spec against many oracles.

Each entry of OPS is checked three ways: its gradient against central differences on every element
(float64, `gradcheck`), on shapes drawn by hypothesis including broadcasting, size-1 axes and
non-contiguous views; and its value and gradient against PyTorch.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.autograd import GradcheckError, backward, backward_rule, gradcheck, no_grad
from tinytorch.core.tensor import Tensor, tensor_op

small_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)


def leaf(array, transposed=False):
    """A float64 leaf; `transposed` gives it a non-contiguous view of its data."""
    data = np.ascontiguousarray(np.asarray(array, dtype=np.float64).T).T if transposed else np.asarray(array, dtype=np.float64)
    return Tensor(data, requires_grad=True)


def values(draw, shape, low=-2.0, high=2.0):
    return draw(hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, width=64)))


# name -> (tinytorch function, torch function, number of inputs, domain of inputs)
UNARY = {
    "neg": (lambda a: -a, lambda a: -a, "any"),
    "exp": (lambda a: a.exp(), lambda a: a.exp(), "any"),
    "log": (lambda a: a.log(), lambda a: a.log(), "positive"),
    "sqrt": (lambda a: a.sqrt(), lambda a: a.sqrt(), "positive"),
    "pow3": (lambda a: a ** 3, lambda a: a ** 3, "any"),
    "pow-half": (lambda a: a ** -0.5, lambda a: a ** -0.5, "positive"),
    "rsub": (lambda a: 1 - a, lambda a: 1 - a, "any"),
    "rdiv": (lambda a: 2 / a, lambda a: 2 / a, "positive"),
    "rmul": (lambda a: 3 * a, lambda a: 3 * a, "any"),
    "sum": (lambda a: a.sum(), lambda a: a.sum(), "any"),
    "mean": (lambda a: a.mean(), lambda a: a.mean(), "any"),
    "transpose": (lambda a: a.T * 1.0, lambda a: a.permute(*reversed(range(a.ndim))) * 1.0, "any"),
    "reshape": (lambda a: a.reshape(-1), lambda a: a.reshape(-1), "any"),
}
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, "any"),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, "any"),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, "any"),
    "div": (lambda a, b: a / b, lambda a, b: a / b, "positive"),
}


def draw_input(draw, shape, domain):
    low, high = (0.5, 2.0) if domain == "positive" else (-2.0, 2.0)
    return leaf(values(draw, shape, low, high), transposed=draw(st.booleans()))


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary_gradients_match_central_differences(name, data):
    function, _, domain = UNARY[name]
    x = draw_input(data.draw, data.draw(small_shapes), domain)
    assert gradcheck(function, x, name=name)


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data(), shapes=pairs)
def test_binary_gradients_with_broadcasting(name, data, shapes):
    function, _, domain = BINARY[name]
    a, b = (draw_input(data.draw, shape, domain) for shape in shapes.input_shapes)
    assert gradcheck(function, a, b, name=name)


matmul_shapes = st.sampled_from([((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
                                 ((2, 2, 3), (3, 4)), ((3,), (2, 3, 4)), ((2, 1, 2, 3), (4, 3, 2)), ((2, 3), (5, 3, 1))])


@given(data=st.data(), shapes=matmul_shapes)
def test_matmul_gradients_for_1d_2d_and_batched(data, shapes):
    a, b = (draw_input(data.draw, shape, "any") for shape in shapes)
    assert gradcheck(lambda x, y: x @ y, a, b, name="matmul")


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), keepdims=st.booleans())
def test_reductions_over_any_axis(data, shape, keepdims):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                               st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple)))
    x = leaf(np.random.default_rng(data.draw(st.integers(0, 10**6))).permutation(np.prod(shape)).reshape(shape) / 7.0)
    for reduce in ("sum", "mean", "max"):  # distinct values: max has no ties
        assert gradcheck(lambda a: getattr(a, reduce)(axis=axis, keepdims=keepdims), x, name=reduce)


@given(data=st.data(), shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=3))
def test_permute_and_transpose(data, shape):
    dims = tuple(data.draw(st.permutations(range(len(shape)))))
    x = draw_input(data.draw, shape, "any")
    assert gradcheck(lambda a: a.permute(*dims), x, name="permute")
    assert gradcheck(lambda a: a.transpose(0, -1), x, name="transpose")


def test_indexing_with_slices_and_repeated_integer_arrays():
    x = leaf(np.random.default_rng(0).standard_normal((4, 5)))
    assert gradcheck(lambda a: a[1:3, ::2], x, name="slice")
    assert gradcheck(lambda a: a[np.array([0, 0, 3]), np.array([1, 1, 4])], x, name="fancy")
    assert gradcheck(lambda a: a[..., -1], x, name="ellipsis")
    assert gradcheck(lambda a: a[Tensor([2, 2], dtype=np.int64)], x, name="tensor index")


def test_gradcheck_rejects_a_wrong_backward_and_names_the_place():
    @tensor_op
    def cube(a):
        return Tensor.from_op(a.data ** 3, cube, (a,))

    @backward_rule(cube)
    def cube_wrong_backward(grad, out, a):
        wrong = 3 * a.data ** 2
        wrong[1] += 1.0
        return (grad * wrong,)

    with pytest.raises(GradcheckError, match=r"input 0 .* index \(1,\)"):
        gradcheck(cube, leaf([1.0, 2.0, 3.0]), name="cube")


@pytest.mark.parametrize("name", sorted(UNARY) + sorted(BINARY) + ["matmul", "getitem", "max"])
def test_values_and_gradients_match_pytorch(torch, name):
    rng = np.random.default_rng(1)
    if name in UNARY:
        mine, theirs, domain = UNARY[name]
        arrays = [rng.random((3, 4)) + 0.5 if domain == "positive" else rng.standard_normal((3, 4))]
    elif name in BINARY:
        mine, theirs, domain = BINARY[name]
        arrays = [rng.random((2, 3, 4)) + 0.5, rng.random((3, 1)) + 0.5]
    else:
        mine = {"matmul": lambda a, b: a @ b, "getitem": lambda a: a[1:, [0, 0, 2]],
                "max": lambda a: a.max(axis=1, keepdims=True)}[name]
        theirs = {"matmul": lambda a, b: a @ b, "getitem": lambda a: a[1:, [0, 0, 2]],
                  "max": lambda a: a.amax(dim=1, keepdim=True)}[name]
        arrays = {"matmul": [rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))],
                  "getitem": [rng.standard_normal((3, 4))], "max": [rng.standard_normal((3, 4))]}[name]
    ours = [leaf(a) for a in arrays]
    reference = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, expected = mine(*ours), theirs(*reference)
    weights = rng.standard_normal(expected.shape)
    backward(out, weights)
    (expected * torch.tensor(weights)).sum().backward()
    assert np.allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    for x, t in zip(ours, reference):
        assert np.allclose(x.grad.data, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_shared_nodes_and_diamonds_accumulate():
    x = leaf([1.0, 2.0])
    a, b = x * 2.0, x * 3.0
    backward((a * b + a).sum())  # d/dx (6x^2 + 2x) = 12x + 2
    assert np.allclose(x.grad.data, 12 * x.data + 2)


def test_twenty_doublings_visit_each_node_once():
    x = leaf([1.0])
    y = x
    for _ in range(20):
        y = y + y
    backward(y.sum())
    assert x.grad.data[0] == 2.0 ** 20


def test_ten_thousand_op_chain_does_not_recurse():
    x = leaf([1.0, 2.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0 + 0.0
    backward(y.sum())
    assert np.allclose(x.grad.data, 1.0)


def test_gradients_accumulate_until_cleared_and_no_grad_records_nothing():
    x = leaf([1.0, -1.0])
    backward((x * x).sum())
    backward((x * x).sum())
    assert np.allclose(x.grad.data, 4 * x.data)
    with no_grad():
        y = x * x
    assert not y.requires_grad and y._parents == ()
    assert not x.detach().requires_grad


def test_graph_is_released_and_second_backward_refused():
    x = leaf([1.0])
    loss = (x * 2.0).sum()
    backward(loss)
    assert loss._parents == ()
    with pytest.raises(RuntimeError, match="already released"):
        backward(loss)


def test_non_scalar_backward_needs_a_gradient():
    with pytest.raises(RuntimeError, match=r"\(2,\)"):
        backward(leaf([1.0, 2.0]) * 2.0)


def test_float32_stays_float32_through_forward_and_backward():
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    W = Tensor(np.ones((3, 4), dtype=np.float32), requires_grad=True)
    loss = ((2 * (x @ W) - 1) ** 2 / 3).mean()
    assert loss.dtype == np.float32
    loss.backward()
    assert x.grad.dtype == np.float32 and W.grad.dtype == np.float32


def test_shape_errors_name_the_op_and_both_shapes():
    with pytest.raises(ValueError, match=r"add.*\(2, 3\).*\(4,\)"):
        Tensor(np.ones((2, 3))) + Tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(2, 3\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((2, 3)))


def test_each_leaf_owns_a_writable_gradient():
    """add hands one array to both inputs and sum a read-only view: leaves must still get their own."""
    a, b, w = leaf([1.0, 2.0]), leaf([3.0, 4.0]), leaf([1.0, 1.0, 1.0])
    backward((a + b).sum() + w.sum())
    assert not np.shares_memory(a.grad.data, b.grad.data)
    for x in (a, b, w):
        x.grad.data *= 0.5  # what in-place gradient clipping does
    assert np.allclose(a.grad.data, 0.5) and np.allclose(b.grad.data, 0.5) and np.allclose(w.grad.data, 0.5)


def test_accumulation_adds_into_the_existing_gradient_in_place():
    x = leaf([1.0, 2.0])
    backward((x * 3.0).sum())
    held = x.grad.data
    backward((x * 3.0).sum())
    assert x.grad.data is held and np.allclose(held, 6.0)
