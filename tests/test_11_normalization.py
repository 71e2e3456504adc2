"""Module 11 (tinytorch.nn.norm): LayerNorm and BatchNorm as fused operations, gradchecked on every element of
every input over hypothesis shapes, and compared with PyTorch: outputs, gradients, running statistics (unbiased
running variance) over several steps, train/eval, state_dict buffers."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinytorch.core.autograd import gradcheck
from tinytorch.core.tensor import Tensor
from tinytorch.nn.conv import Conv2d
from tinytorch.nn.norm import (BatchNorm1d, BatchNorm2d, LayerNorm, ResidualBlock, batch_norm, fold_batch_norm, layer_norm,
                                normalized_grad, standardize, sum_of_product)


def leaf(array):
    return Tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def draw(seed, shape, scale=2.0, shift=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale + shift


def float64(module):
    """The module with float64 parameters and buffers, for gradcheck and exact comparisons."""
    for tensor in [*module.parameters(), *(buffer for _, buffer in module.named_buffers())]:
        if np.issubdtype(tensor.dtype, np.floating):
            tensor.data = tensor.data.astype(np.float64)
    return module


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


# --- the shared closed form -----------------------------------------------------------------------

@given(shape=st.lists(st.integers(2, 4), min_size=2, max_size=3).map(tuple), seed=st.integers(0, 99), data=st.data())
def test_normalized_grad_is_the_gradient_of_standardisation(shape, seed, data):
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    x, upstream = leaf(draw(seed, shape)), draw(seed + 1, shape)

    def standardise(x):  # module-01 primitives: autograd differentiates every piece
        centred = x - x.mean(axis=axes, keepdims=True)
        return centred / ((centred * centred).mean(axis=axes, keepdims=True) + 1e-5).sqrt()

    standardise(x).backward(upstream)
    xhat, mean, var, rstd = standardize(x.data, axes, 1e-5)
    assert np.allclose(mean, x.data.mean(axis=axes, keepdims=True)) and np.allclose(var, x.data.var(axis=axes, keepdims=True))
    assert np.allclose(xhat, standardise(x).data, atol=1e-12)
    assert np.allclose(normalized_grad(upstream, xhat, rstd, axes), x.grad.data, atol=1e-10)
    assert np.allclose(sum_of_product(x.data, upstream, axes), (x.data * upstream).sum(axis=axes, keepdims=True))


# --- LayerNorm ------------------------------------------------------------------------------------

@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
       normalized=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple), seed=st.integers(0, 99))
def test_layer_norm_gradcheck_every_element(lead, normalized, seed):
    if np.prod(normalized) < 2:
        normalized = normalized[:-1] + (2,)
    x, w, b = leaf(draw(seed, lead + normalized)), leaf(draw(seed + 1, normalized)), leaf(draw(seed + 2, normalized))
    assert gradcheck(lambda x, w, b: layer_norm(x, normalized, w, b), x, w, b)
    assert gradcheck(lambda x: layer_norm(x, normalized), leaf(draw(seed + 3, lead + normalized)))


def test_layer_norm_is_one_node_with_its_inputs_as_parents():
    x, w, b = leaf(draw(0, (2, 3))), leaf(np.ones(3)), leaf(np.zeros(3))
    out = layer_norm(x, 3, w, b)
    assert out._op is layer_norm and out._parents == (x, w, b)


@given(lead=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple), width=st.integers(2, 6),
       seed=st.integers(0, 99))
def test_layer_norm_matches_pytorch(torch, lead, width, seed):
    ours = float64(LayerNorm(width))
    ours.weight.data[...], ours.bias.data[...] = draw(seed, width), draw(seed + 1, width)
    theirs = torch.nn.LayerNorm(width, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data))
        theirs.bias.copy_(torch.tensor(ours.bias.data))
    array, upstream = draw(seed + 2, lead + (width,), scale=3.0), draw(seed + 3, lead + (width,))
    x, reference = leaf(array), torch.tensor(array, requires_grad=True)
    out, expected = ours(x), theirs(reference)
    out.backward(upstream)
    expected.backward(torch.tensor(upstream))
    assert np.allclose(out.data, expected.detach().numpy(), atol=1e-10)
    assert np.allclose(x.grad.data, reference.grad.numpy(), atol=1e-9)
    assert np.allclose(ours.weight.grad.data, theirs.weight.grad.numpy(), atol=1e-9)
    assert np.allclose(ours.bias.grad.data, theirs.bias.grad.numpy(), atol=1e-9)


def test_layer_norm_keeps_float32_and_refuses_a_wrong_shape():
    out = LayerNorm((3, 4))(Tensor(draw(0, (2, 3, 4)), dtype=np.float32))
    assert out.dtype == np.float32 and np.allclose(out.data.reshape(2, 12).mean(1), 0, atol=1e-5)
    with pytest.raises(ValueError, match=r"must end with normalized_shape \(4,\)"):
        LayerNorm(4)(Tensor(np.ones((2, 5))))
    with pytest.raises(ValueError, match="both weight and bias"):
        layer_norm(Tensor(np.ones((2, 3))), 3, Tensor(np.ones(3)))
    assert LayerNorm(3, elementwise_affine=False).parameters() == []


# --- BatchNorm ------------------------------------------------------------------------------------

@given(batch=st.integers(1, 4), channels=st.integers(1, 3), spatial=st.lists(st.integers(1, 3), max_size=2).map(tuple),
       seed=st.integers(0, 99))
def test_batch_norm_gradcheck_every_element_training(batch, channels, spatial, seed):
    shape = (batch + 1, channels) + spatial  # at least 2 values per channel
    x, w, b = leaf(draw(seed, shape)), leaf(draw(seed + 1, channels)), leaf(draw(seed + 2, channels))
    assert gradcheck(lambda x, w, b: batch_norm(x, None, None, w, b, training=True), x, w, b)
    assert gradcheck(lambda x: batch_norm(x, None, None, training=True), leaf(draw(seed + 3, shape)))


@given(batch=st.integers(1, 3), channels=st.integers(1, 3), spatial=st.lists(st.integers(1, 3), max_size=2).map(tuple),
       seed=st.integers(0, 99))
def test_batch_norm_gradcheck_every_element_eval(batch, channels, spatial, seed):
    shape = (batch, channels) + spatial
    stats = Tensor(draw(seed, channels)), Tensor(np.random.default_rng(seed).uniform(0.2, 3.0, channels))
    x, w, b = leaf(draw(seed + 1, shape)), leaf(draw(seed + 2, channels)), leaf(draw(seed + 3, channels))
    assert gradcheck(lambda x, w, b: batch_norm(x, *stats, w, b, training=False), x, w, b)


def test_a_broken_rule_is_caught_without_pytorch():
    """Dropping the mean(g * x_hat) term (the variance's share) must fail gradcheck."""
    from tinytorch.core.autograd import GradcheckError
    from tinytorch.nn import norm

    def wrong(grad_xhat, xhat, rstd, axes):
        return rstd * (grad_xhat - grad_xhat.mean(axis=axes, keepdims=True))

    original, norm.normalized_grad = norm.normalized_grad, wrong
    try:
        with pytest.raises(GradcheckError):
            gradcheck(lambda x: batch_norm(x, None, None, training=True), leaf(draw(0, (4, 2))))
    finally:
        norm.normalized_grad = original


def copy_batch_norm(torch, ours, cls):
    theirs = cls(ours.num_features, eps=ours.eps, momentum=ours.momentum, dtype=torch.float64)
    theirs.load_state_dict({name: torch.tensor(value) for name, value in ours.state_dict().items()})
    return theirs


@pytest.mark.parametrize("ours_cls, shape", [(BatchNorm1d, (6, 3)), (BatchNorm1d, (4, 3, 5)), (BatchNorm2d, (4, 3, 2, 5))])
def test_batch_norm_matches_pytorch_over_steps_in_train_and_eval(torch, ours_cls, shape):
    """Outputs and every gradient over five training steps, running statistics (unbiased variance) after each,
    then eval mode, state_dict keys and values."""
    cls = getattr(torch.nn, ours_cls.__name__)
    ours = float64(ours_cls(3, momentum=0.3))
    ours.weight.data[...], ours.bias.data[...] = draw(0, 3), draw(1, 3)
    theirs = copy_batch_norm(torch, ours, cls)
    for step in range(5):
        array, upstream = draw(10 + step, shape, scale=1.0 + step, shift=step - 2.0), draw(20 + step, shape)
        x, reference = leaf(array), torch.tensor(array, requires_grad=True)
        ours.zero_grad()
        theirs.zero_grad()
        out, expected = ours(x), theirs(reference)
        out.backward(upstream)
        expected.backward(torch.tensor(upstream))
        assert np.allclose(out.data, expected.detach().numpy(), atol=1e-10)
        assert np.allclose(x.grad.data, reference.grad.numpy(), atol=1e-9)
        assert np.allclose(ours.weight.grad.data, theirs.weight.grad.numpy(), atol=1e-9)
        assert np.allclose(ours.bias.grad.data, theirs.bias.grad.numpy(), atol=1e-9)
        assert np.allclose(ours.running_mean.data, theirs.running_mean.numpy(), atol=1e-12)
        assert np.allclose(ours.running_var.data, theirs.running_var.numpy(), atol=1e-12)
    ours.eval()
    theirs.eval()
    array = draw(30, shape)
    x, reference = leaf(array), torch.tensor(array, requires_grad=True)
    out, expected = ours(x), theirs(reference)
    out.backward(np.ones(shape))
    expected.sum().backward()
    assert np.allclose(out.data, expected.detach().numpy(), atol=1e-10)
    assert np.allclose(x.grad.data, reference.grad.numpy(), atol=1e-9)
    state, reference_state = ours.state_dict(), theirs.state_dict()
    assert list(state) == list(reference_state)
    for name in state:
        assert np.allclose(state[name], reference_state[name].numpy()), name
    assert state["num_batches_tracked"] == 5


def test_batch_norm_module_refusals_and_float32():
    bn = BatchNorm2d(3)
    out = bn(Tensor(draw(0, (2, 3, 4, 4)), dtype=np.float32))
    assert out.dtype == np.float32 and bn.running_mean.dtype == np.float32
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\): expected input of shape \(N, 3, H, W\), got \(2, 4, 4, 4\)"):
        bn(Tensor(np.ones((2, 4, 4, 4))))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3)(Tensor(np.ones((1, 3))))
    assert BatchNorm1d(3).eval()(Tensor(np.ones((1, 3)))).shape == (1, 3), "one sample is fine in eval mode"
    plain = BatchNorm1d(2, affine=False)
    assert plain.parameters() == [] and plain.weight is None


def test_load_state_dict_restores_eval_behaviour():
    bn = BatchNorm2d(2)
    for seed in range(3):
        bn(Tensor(draw(seed, (4, 2, 3, 3)), dtype=np.float32))
    bn.eval()
    x = Tensor(draw(9, (2, 2, 3, 3)), dtype=np.float32)
    copy = BatchNorm2d(2)
    copy.load_state_dict(bn.state_dict())
    copy.eval()
    assert np.array_equal(copy(x).data, bn(x).data) and copy.num_batches_tracked.item() == 3


# --- residual blocks and folding ---------------------------------------------------------------------

def torch_block(torch, ours):
    """PyTorch's basic block (torchvision's BasicBlock shape) holding our block's weights and statistics."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False, dtype=torch.float64)
            self.bn1 = nn.BatchNorm2d(c_out, dtype=torch.float64)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False, dtype=torch.float64)
            self.bn2 = nn.BatchNorm2d(c_out, dtype=torch.float64)
            self.shortcut = None if ours.shortcut is None else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False, dtype=torch.float64), nn.BatchNorm2d(c_out, dtype=torch.float64))

        def forward(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(out + (x if self.shortcut is None else self.shortcut(x)))

    theirs = Block(ours.conv1.in_channels, ours.conv1.out_channels, ours.conv1.stride)
    state = {name.replace("layers.", ""): torch.tensor(value) for name, value in ours.state_dict().items()}
    theirs.load_state_dict(state)
    return theirs


@pytest.mark.parametrize("c_in, c_out, stride", [(3, 3, 1), (2, 4, 2), (3, 4, 1)])
def test_residual_block_matches_pytorch_in_train_and_eval(torch, c_in, c_out, stride):
    ours = float64(ResidualBlock(c_in, c_out, stride))
    theirs = torch_block(torch, ours)
    for mode in ("train", "eval"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        array = draw(1, (3, c_in, 5, 5))
        x, reference = leaf(array), torch.tensor(array, requires_grad=True)
        out, expected = ours(x), theirs(reference)
        upstream = draw(2, out.shape)
        ours.zero_grad()
        theirs.zero_grad()
        out.backward(upstream)
        expected.backward(torch.tensor(upstream))
        assert np.allclose(out.data, expected.detach().numpy(), atol=1e-10), mode
        assert np.allclose(x.grad.data, reference.grad.numpy(), atol=1e-9), mode
        reference_grads = {name.replace("shortcut.", "shortcut.layers."): p.grad.numpy()
                           for name, p in theirs.named_parameters()}
        for name, parameter in ours.named_parameters():
            assert np.allclose(parameter.grad.data, reference_grads[name], atol=1e-9), (mode, name)
    assert np.allclose(ours.bn1.running_var.data, theirs.bn1.running_var.numpy())


def test_residual_block_gradcheck_every_parameter():
    block = float64(ResidualBlock(2, 3, stride=2))
    x = leaf(draw(0, (2, 2, 4, 4)))
    assert gradcheck(lambda x, *params: block(x), x, *block.parameters())
    assert [name for name, _ in block.named_parameters()][-3:] == ["shortcut.layers.0.weight", "shortcut.layers.1.weight",
                                                                  "shortcut.layers.1.bias"]


def test_identity_block_without_the_residual_branch_is_relu():
    block = ResidualBlock(2, 2)
    assert block.shortcut is None
    block.conv2.weight.data[...] = 0
    x = Tensor(draw(0, (2, 2, 3, 3)), dtype=np.float32)
    assert np.allclose(block(x).data, np.maximum(x.data, 0), atol=1e-6)


@pytest.mark.parametrize("bias, stride, affine", [(False, 1, True), (True, 2, True), (True, 1, False)])
def test_fold_batch_norm_matches_conv_then_eval_batch_norm(bias, stride, affine):
    rng = np.random.default_rng(0)
    conv, bn = Conv2d(3, 5, 3, stride=stride, padding=1, bias=bias, dtype=np.float64), float64(BatchNorm2d(5, affine=affine))
    bn.running_mean.data[...], bn.running_var.data[...] = rng.standard_normal(5), rng.uniform(0.3, 3.0, 5)
    if affine:
        bn.weight.data[...], bn.bias.data[...] = rng.standard_normal(5), rng.standard_normal(5)
    bn.eval()
    x = Tensor(draw(1, (2, 3, 7, 7)))
    before = {name: value.copy() for name, value in [*conv.state_dict().items(), *bn.state_dict().items()]}
    folded = fold_batch_norm(conv, bn)
    assert np.allclose(folded(x).data, bn(conv(x)).data, atol=1e-5)
    after = {**conv.state_dict(), **bn.state_dict()}
    assert all(np.array_equal(before[name], after[name]) for name in before)
