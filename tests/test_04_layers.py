"""Module 04 (tinytorch.nn.layers): the Module tree, state_dict and its refusals, layers through gradcheck and
against PyTorch (weights copied in), Dropout's statistics, and the initialisers' scales."""
import math
import re

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinytorch.core.autograd import gradcheck
from tinytorch.core.tensor import Tensor
from tinytorch.nn.layers import (GELU, Dropout, Flatten, Linear, LogSoftmax, Module, Parameter, ReLU, Sequential,
                                 Sigmoid, Softmax, Tanh, fan_in_and_out, kaiming_normal_, kaiming_uniform_,
                                 manual_seed, uniform_, xavier_uniform_, zeros_)


def leaf(array):
    return Tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


class Affine(Module):
    def __init__(self, n, dtype=np.float32):
        super().__init__()
        self.w = Parameter(np.eye(n), dtype=dtype)
        self.b = Parameter(np.zeros(n), dtype=dtype)

    def forward(self, x):
        return x @ self.w + self.b


class Tree(Module):
    """Members in attributes, a list, a tuple, a dict, a tied weight, a module used twice, and non-members."""

    def __init__(self):
        super().__init__()
        self.scale = Parameter(np.array(2.0))
        self.first = Affine(3)
        self.blocks = [Affine(3), (Affine(3), Parameter(np.ones(3)))]
        self.heads = {"cls": Affine(3), "box": [Affine(3)]}
        self.tied = Affine(3)
        self.tied.w = self.first.w
        self.alias = self.blocks[0]
        self.frozen = Tensor(np.ones(3))
        self.label = "text"
        self.register_buffer("steps", np.zeros((), dtype=np.int64))

    def forward(self, x):
        for block in [self.first, self.blocks[0], self.blocks[1][0], self.heads["cls"], self.heads["box"][0],
                      self.tied, self.alias]:
            x = block(x)
        return x * self.scale + self.blocks[1][1]


# a module's own parameters first (blocks.1.1 is the root's), then its sub-modules' in order; the tied weight once
TREE_PARAMETERS = ["scale", "blocks.1.1", "first.w", "first.b", "blocks.0.w", "blocks.0.b", "blocks.1.0.w",
                   "blocks.1.0.b", "heads.cls.w", "heads.cls.b", "heads.box.0.w", "heads.box.0.b", "tied.b"]


# --- the tree -----------------------------------------------------------------------------------

def test_parameters_are_found_by_walking_and_shared_ones_count_once():
    tree = Tree()
    assert [name for name, _ in tree.named_parameters()] == TREE_PARAMETERS
    assert len({id(p) for p in tree.parameters()}) == len(tree.parameters()) == len(TREE_PARAMETERS)
    assert [path for path, _ in tree.named_modules()] == ["", "first", "blocks.0", "blocks.1.0", "heads.cls",
                                                          "heads.box.0", "tied"]
    assert [name for name, _ in tree.named_children()] == ["first", "blocks.0", "blocks.1.0", "heads.cls",
                                                           "heads.box.0", "tied"]
    assert tree.modules()[0] is tree and len(tree.children()) == 6


def test_every_parameter_receives_a_gradient():
    tree = Tree()
    tree(Tensor(np.ones((2, 3), dtype=np.float32))).sum().backward()
    assert [name for name, p in tree.named_parameters() if p.grad is None] == []
    mlp = Sequential(Flatten(), Linear(12, 8), GELU(), Dropout(0.2), Linear(8, 8), Tanh(), Linear(8, 3), LogSoftmax())
    mlp(Tensor(np.ones((4, 3, 4), dtype=np.float32))).sum().backward()
    assert [name for name, p in mlp.named_parameters() if p.grad is None] == []


def test_a_module_without_super_init_still_works():
    class Bare(Module):
        def __init__(self):
            self.inner = Affine(2)

    bare = Bare().eval()
    assert not bare.training and not bare.inner.training and len(bare.parameters()) == 2
    assert list(bare.state_dict()) == ["inner.w", "inner.b"]


def test_train_and_eval_reach_every_module_and_zero_grad_clears():
    tree = Tree()
    assert tree.eval() is tree and [m.training for m in tree.modules()] == [False] * 7
    assert tree.train() is tree and all(m.training for m in tree.modules())
    tree(Tensor(np.ones((1, 3), dtype=np.float32))).sum().backward()
    tree.zero_grad()
    assert all(p.grad is None for p in tree.parameters())


def test_parameter_dtype_policy():
    assert Parameter([1, 2]).dtype == np.float32 and Parameter([1, 2]).requires_grad
    assert Parameter(np.zeros(2)).dtype == np.float64
    assert Parameter(Tensor(np.zeros(2, dtype=np.float32))).dtype == np.float32
    with pytest.raises(TypeError, match="floating"):
        Parameter([1, 2], dtype=np.int64)
    assert repr(Parameter([1.0])).startswith("Parameter(")


def test_repr_shows_the_tree():
    text = repr(Sequential(Flatten(), Linear(4, 2), Softmax(axis=0)))
    assert "(layers.1): Linear(in_features=4, out_features=2, bias=True)" in text and "Softmax(axis=0)" in text


# --- state_dict -------------------------------------------------------------------------------

def test_state_dict_round_trip_with_buffers_in_place_and_dtype_kept():
    source, target = Tree(), Tree()
    for p in source.parameters():
        p.data[...] = np.random.default_rng(0).standard_normal(p.shape)
    source.steps.data[...] = 7
    state = source.state_dict()
    assert list(state) == TREE_PARAMETERS + ["steps"]
    state["first.b"][0] = 123.0
    assert source.first.b.data[0] != 123.0, "state_dict holds copies"
    weight = target.first.w
    missing, unexpected = target.load_state_dict({k: v.astype(np.float64) for k, v in source.state_dict().items()})
    assert (missing, unexpected) == ([], [])
    assert target.first.w is weight and weight.dtype == np.float32 and target.steps.dtype == np.int64
    assert all(np.array_equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values()))
    assert target.steps.item() == 7


def test_state_dict_accepts_tensors_as_values():
    layer = Linear(2, 3)
    copy = Linear(2, 3)
    copy.load_state_dict({name: Tensor(p.data) for name, p in layer.named_parameters()})
    assert np.array_equal(copy.weight.data, layer.weight.data)


BROKEN = {
    "missing": (lambda s: {k: v for k, v in s.items() if k != "heads.box.0.w"}, ["missing", "heads.box.0.w"]),
    "unexpected": (lambda s: {**s, "decoder.w": np.ones(3)}, ["unexpected", "decoder.w"]),
    "misshaped": (lambda s: {**s, "tied.b": np.ones((1, 3))}, ["tied.b", r"\(1, 3\)", r"\(3,\)"]),
    "all three": (lambda s: {**{k: v for k, v in s.items() if k != "scale"}, "x": np.ones(1), "first.w": np.ones(2)},
                  ["missing", "scale", "unexpected", "x", "first.w", r"\(2,\)", r"\(3, 3\)"]),
}


@pytest.mark.parametrize("problem", sorted(BROKEN))
def test_load_state_dict_refuses_and_changes_nothing(problem):
    tree = Tree()
    good = {k: v + 1.0 for k, v in Tree().state_dict().items()}  # every loadable entry differs from tree's
    before = tree.state_dict()
    breaking, words = BROKEN[problem]
    with pytest.raises(ValueError) as refusal:
        tree.load_state_dict(breaking(good))
    for word in words:
        assert re.search(word, str(refusal.value)), (word, str(refusal.value))
    after = tree.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before), "a refusal changes nothing"


def test_non_strict_loading_skips_names_but_still_refuses_shapes():
    tree = Tree()
    missing, unexpected = tree.load_state_dict({"first.b": np.full(3, 4.0), "extra": np.zeros(1)}, strict=False)
    assert np.all(tree.first.b.data == 4.0) and unexpected == ["extra"] and len(missing) == len(TREE_PARAMETERS)
    with pytest.raises(ValueError, match="first.b"):
        tree.load_state_dict({"first.b": np.zeros(4)}, strict=False)


# --- layers against gradcheck and PyTorch --------------------------------------------------------

@given(batch=st.lists(st.integers(1, 3), max_size=2).map(tuple), n_in=st.integers(1, 5), n_out=st.integers(1, 4),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_gradcheck(batch, n_in, n_out, bias, seed):
    rng = np.random.default_rng(seed)
    layer = Linear(n_in, n_out, bias=bias, dtype=np.float64, rng=rng)
    x = leaf(rng.standard_normal(batch + (n_in,)))
    assert gradcheck(lambda x, *params: layer(x), x, *layer.parameters(), name="Linear")


def copy_linear(torch, ours):
    """A torch.nn.Linear holding our weights: PyTorch stores W as (out, in), we store (in, out)."""
    theirs = torch.nn.Linear(ours.in_features, ours.out_features, bias=ours.bias is not None, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data.T))
        if ours.bias is not None:
            theirs.bias.copy_(torch.tensor(ours.bias.data))
    return theirs


@given(batch=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple), n_in=st.integers(1, 6),
       n_out=st.integers(1, 5), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_matches_pytorch_with_weights_copied_in(torch, batch, n_in, n_out, bias, seed):
    rng = np.random.default_rng(seed)
    ours = Linear(n_in, n_out, bias=bias, dtype=np.float64, rng=rng)
    theirs = copy_linear(torch, ours)
    array = rng.standard_normal(batch + (n_in,))
    x, reference = leaf(array), torch.tensor(array, requires_grad=True)
    weights = rng.standard_normal(batch + (n_out,))
    out, expected = ours(x), theirs(reference)
    out.backward(weights)
    (expected * torch.tensor(weights)).sum().backward()
    assert np.allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert np.allclose(x.grad.data, reference.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert np.allclose(ours.weight.grad.data, theirs.weight.grad.numpy().T, rtol=1e-12, atol=1e-12)
    if bias:
        assert np.allclose(ours.bias.grad.data, theirs.bias.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_mlp_matches_pytorch_values_and_every_gradient(torch):
    manual_seed(0)
    ours = Sequential(Flatten(), Linear(12, 16, dtype=np.float64), ReLU(), Linear(16, 8, dtype=np.float64), GELU(),
                      Linear(8, 8, dtype=np.float64), Tanh(), Linear(8, 8, dtype=np.float64), Sigmoid(),
                      Linear(8, 5, dtype=np.float64), LogSoftmax(axis=-1))
    nn = torch.nn
    linears = [layer for layer in ours.layers if isinstance(layer, Linear)]
    copies = [copy_linear(torch, layer) for layer in linears]
    theirs = nn.Sequential(nn.Flatten(), copies[0], nn.ReLU(), copies[1], nn.GELU(), copies[2], nn.Tanh(), copies[3],
                           nn.Sigmoid(), copies[4], nn.LogSoftmax(dim=-1))
    array = np.random.default_rng(1).standard_normal((6, 3, 4)) * 2
    out, expected = ours(leaf(array)), theirs(torch.tensor(array))
    out.mean().backward()
    expected.mean().backward()
    assert np.allclose(out.data, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    for layer, copy in zip(linears, copies):
        assert np.allclose(layer.weight.grad.data, copy.weight.grad.numpy().T, rtol=1e-9, atol=1e-12)
        assert np.allclose(layer.bias.grad.data, copy.bias.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_whole_mlp_gradcheck_through_every_parameter():
    rng = np.random.default_rng(3)
    model = Sequential(Flatten(), Linear(6, 5, dtype=np.float64, rng=rng), GELU(), Linear(5, 4, dtype=np.float64, rng=rng),
                       Softmax(axis=0), Dropout(0.5))
    model.eval()
    assert gradcheck(lambda x, *params: model(x), leaf(rng.standard_normal((3, 2, 3))), *model.parameters())


def test_activation_modules_and_flatten_match_pytorch(torch):
    array = np.random.default_rng(4).standard_normal((2, 3, 4))
    F = torch.nn.functional
    reference = torch.tensor(array)
    pairs = [(ReLU(), F.relu(reference)), (Sigmoid(), reference.sigmoid()), (Tanh(), reference.tanh()),
             (GELU(), F.gelu(reference)), (Softmax(axis=1), F.softmax(reference, dim=1)),
             (LogSoftmax(axis=0), F.log_softmax(reference, dim=0)), (Flatten(), reference.flatten(1))]
    for module, expected in pairs:
        assert np.allclose(module(leaf(array)).data, expected.numpy(), rtol=1e-10, atol=1e-12), type(module).__name__
        assert module.parameters() == []


def test_linear_refuses_the_wrong_number_of_features():
    with pytest.raises(ValueError, match=r"Linear\(4 -> 2\).*\(3, 5\)"):
        Linear(4, 2)(Tensor(np.ones((3, 5))))


def test_reference_mlp_has_the_benchmark_parameter_count(torch):
    mlp = Sequential(Flatten(), Linear(3072, 512), ReLU(), Linear(512, 256), ReLU(), Linear(256, 10))
    count = sum(p.size for p in mlp.parameters())
    nn = torch.nn
    reference = nn.Sequential(nn.Linear(3072, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    assert count == 1_707_274 == sum(p.numel() for p in reference.parameters())
    assert all(p.dtype == np.float32 for p in mlp.parameters())


# --- Dropout ------------------------------------------------------------------------------------

def test_dropout_statistics_and_inverted_scaling():
    for p in (0.1, 0.5, 0.8):
        out = Dropout(p, rng=np.random.default_rng(0))(Tensor(np.ones(200_000, dtype=np.float32))).data
        dropped = np.mean(out == 0)
        assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / out.size), (p, dropped)
        assert np.allclose(out[out != 0], 1 / (1 - p)) and abs(out.mean() - 1) < 0.02
        assert out.dtype == np.float32


def test_dropout_is_the_identity_in_eval_and_at_p_zero():
    x = Tensor(np.ones((3, 4)), requires_grad=True)
    assert Dropout(0.5).eval()(x) is x and Dropout(0.0)(x) is x
    assert np.all(Dropout(1.0)(x).data == 0)


def test_dropout_gradient_follows_the_mask_and_is_seeded():
    x = leaf(np.random.default_rng(5).standard_normal((4, 6)))
    assert gradcheck(lambda t: Dropout(0.3, rng=np.random.default_rng(7))(t), x, name="Dropout")
    manual_seed(3)
    first = Dropout(0.5)(Tensor(np.ones(100))).data
    manual_seed(3)
    assert np.array_equal(first, Dropout(0.5)(Tensor(np.ones(100))).data)
    with pytest.raises(ValueError, match="1.5"):
        Dropout(1.5)


# --- initialisers --------------------------------------------------------------------------------

def test_fans_follow_pytorch_with_linear_weights_transposed(torch):
    fans = torch.nn.init._calculate_fan_in_and_fan_out
    for shape in [(16, 8, 3, 3), (4, 2, 5), (6, 3, 2, 2, 2)]:
        assert fan_in_and_out(shape) == fans(torch.empty(shape))
    assert fan_in_and_out((30, 20)) == fans(torch.empty(20, 30)), "our Linear weight is (in, out)"
    with pytest.raises(ValueError, match=r"\(5,\)"):
        fan_in_and_out((5,))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initialisers_scale_in_place_and_keep_dtype(dtype):
    rng = np.random.default_rng(0)
    w = Parameter(np.zeros((400, 300)), dtype=dtype)
    data = w.data
    initialisers = [  # (call, bound of |w| or None, expected std)
        (lambda: xavier_uniform_(w, gain=2.0, rng=rng), 2 * math.sqrt(6 / 700), 2 * math.sqrt(2 / 700)),
        (lambda: kaiming_uniform_(w, rng=rng), math.sqrt(6 / 400), math.sqrt(2 / 400)),
        (lambda: kaiming_normal_(w, gain=1.0, rng=rng), None, math.sqrt(1 / 400)),
        (lambda: uniform_(w, -0.2, 0.2, rng=rng), 0.2, 0.2 / math.sqrt(3)),
    ]
    for initialise, bound, std in initialisers:
        assert initialise() is w and w.data is data and w.dtype == dtype
        if bound is not None:
            assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.99 * bound
        assert abs(w.data.std() / std - 1) < 0.02 and abs(w.data.mean()) < 0.05 * std
    assert zeros_(w) is w and not w.data.any()


def test_linear_default_init_matches_pytorch_range():
    layer = Linear(900, 400, rng=np.random.default_rng(1))
    bound = 1 / 30
    for p in (layer.weight, layer.bias):
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.95 * bound
    assert abs(layer.weight.data.std() / (bound / math.sqrt(3)) - 1) < 0.02
    manual_seed(2)
    a = Linear(3, 3).weight.data.copy()
    manual_seed(2)
    assert np.array_equal(a, Linear(3, 3).weight.data)
