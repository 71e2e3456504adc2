"""Module 14: the embedding op (gradcheck, PyTorch), Embedding, positional encodings, weight tying."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinytorch.core.autograd import GradcheckError, gradcheck
from tinytorch.core.tensor import Tensor
from tinytorch.nn.embeddings import (
    Embedding, PositionalEmbedding, embedding, embedding_backward, sinusoidal_encoding,
)
from tinytorch.nn.layers import Module
from tinytorch.optim import SGD


def table(rows, width, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return Tensor(rng.standard_normal((rows, width)).astype(dtype), requires_grad=True)


@st.composite
def lookups(draw):
    """A table size, and an index array of 0-3 axes in which indices repeat (the scatter-add case)."""
    rows, width = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=3))
    seed = draw(st.integers(0, 2 ** 16))
    indices = np.random.default_rng(seed).integers(0, rows, size=shape)
    return rows, width, indices, seed


@settings(deadline=None)
@given(lookups())
def test_embedding_forward_is_indexing(case):
    rows, width, indices, seed = case
    weight = table(rows, width, seed)
    out = embedding(weight, indices)
    assert out.shape == (*indices.shape, width)
    assert np.array_equal(out.data, weight.data[indices])


@settings(deadline=None, max_examples=30)
@given(lookups())
def test_embedding_gradcheck_every_element(case):
    rows, width, indices, seed = case
    weight = table(rows, width, seed)
    assert gradcheck(lambda w: embedding(w, indices) * 1.5, weight)


def test_every_index_repeated_accumulates():
    weight = table(5, 3)
    indices = np.array([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 2, 2, 0, 4]])  # every index at least twice
    upstream = np.random.default_rng(1).standard_normal((3, 5, 3))
    embedding(weight, indices).backward(upstream)
    expected = np.zeros((5, 3))
    np.add.at(expected, indices, upstream)
    assert np.allclose(weight.grad.data, expected)
    assert gradcheck(lambda w: embedding(w, indices) ** 2, table(5, 3, seed=2))


def test_gradcheck_rejects_an_overwriting_rule(monkeypatch):
    """Without PyTorch: the check the suite relies on catches the classic mistake (assign, not add)."""
    from tinytorch.core import tensor as tensor_module

    def overwriting(grad, out, weight, indices):
        dweight = np.zeros_like(weight.data)
        dweight[indices.reshape(-1)] = grad.reshape(indices.size, -1)
        return (dweight,)

    monkeypatch.setitem(tensor_module.BACKWARD_RULES, embedding, overwriting)
    with pytest.raises(GradcheckError):
        gradcheck(lambda w: embedding(w, np.array([1, 1, 0])), table(3, 2))


def test_rule_handles_empty_and_float32():
    weight = table(4, 2, dtype=np.float32)
    (empty,) = embedding_backward(np.zeros((0, 2), np.float32), None, weight, np.zeros(0, np.int64))
    assert empty.shape == (4, 2) and not empty.any()
    embedding(weight, np.array([3, 3])).sum().backward()
    assert weight.grad.dtype == np.float32 and weight.grad.data[3].tolist() == [2.0, 2.0]


@pytest.mark.parametrize("bad, error, words", [
    (np.array([0.0, 1.0]), TypeError, ["float64"]),
    (np.array([True, False]), TypeError, ["bool"]),
    (np.array([[0, 7]]), IndexError, ["7", "0 to 4"]),
    (np.array([-2]), IndexError, ["-2", "0 to 4"]),
    (Tensor([1.0]), TypeError, ["float32"]),
])
def test_bad_indices_are_refused_with_a_clear_message(bad, error, words):
    with pytest.raises(error) as info:
        embedding(table(5, 2), bad)
    assert all(w in str(info.value) for w in words), str(info.value)


@settings(deadline=None, max_examples=20)
@given(lookups())
def test_embedding_matches_pytorch(torch, case):
    rows, width, indices, seed = case
    weight = table(rows, width, seed)
    upstream = np.random.default_rng(seed + 1).standard_normal((*indices.shape, width))
    out = embedding(weight, indices)
    out.backward(upstream)
    w = torch.tensor(weight.data, requires_grad=True)
    ref = torch.nn.functional.embedding(torch.tensor(indices, dtype=torch.long), w)
    ref.backward(torch.tensor(upstream))
    assert np.allclose(out.data, ref.detach().numpy())
    assert np.allclose(weight.grad.data, w.grad.numpy())


def test_embedding_layer(torch):
    emb = Embedding(7, 3, dtype=np.float64, rng=np.random.default_rng(0))
    ref = torch.nn.Embedding(7, 3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(emb.weight.data))
    ids = np.array([[1, 6, 1], [0, 1, 6]])
    emb(ids).sum().backward()
    ref(torch.tensor(ids)).sum().backward()
    assert np.allclose(emb.weight.grad.data, ref.weight.grad.numpy())
    assert ref.weight.shape == emb.weight.shape


def test_embedding_accepts_loader_tensors_and_keeps_dtype():
    emb = Embedding(10, 4)
    ids = Tensor(np.array([[1, 2]]), dtype=np.int64)
    assert emb(ids).shape == (1, 2, 4) and emb(ids).dtype == np.float32


class TiedLM(Module):
    def __init__(self, vocab, width, max_len):
        super().__init__()
        self.tokens = Embedding(vocab, width, dtype=np.float64, rng=np.random.default_rng(0))
        self.positions = PositionalEmbedding(max_len, width, dtype=np.float64, rng=np.random.default_rng(1))
        self.output = self.tokens  # tied

    def forward(self, ids):
        return self.output.attend(self.tokens(ids) + self.positions(ids))


def test_weight_tying_counts_once_and_sums_both_paths():
    model = TiedLM(6, 3, 4)
    assert [n for n, _ in model.named_parameters()] == ["tokens.weight", "positions.weight"]
    assert sorted(model.state_dict()) == ["positions.weight", "tokens.weight"]
    ids = np.array([[0, 5, 5, 2]])
    pos = model.positions.weight
    assert gradcheck(lambda w: model.output.attend(embedding(w, ids) + model.positions(ids)), model.tokens.weight)
    assert gradcheck(lambda p: model.tokens.attend(model.tokens(ids) + embedding(p, np.arange(4))), pos)
    before = model.tokens.weight.data.copy()
    model.zero_grad()
    model(ids).sum().backward()
    grad = model.tokens.weight.grad.data.copy()
    SGD(model.parameters(), lr=0.1).step()
    assert np.allclose(model.tokens.weight.data, before - 0.1 * grad), "one update, not one per use"


def test_tied_model_matches_pytorch(torch):
    model = TiedLM(6, 3, 4)
    ids = np.array([[0, 5, 5, 2]])
    model(ids).sum().backward()
    tok = torch.tensor(model.tokens.weight.data, requires_grad=True)
    pos = torch.tensor(model.positions.weight.data, requires_grad=True)
    h = torch.nn.functional.embedding(torch.tensor(ids), tok) + pos[:4]
    (h @ tok.T).sum().backward()
    assert np.allclose(model.tokens.weight.grad.data, tok.grad.numpy())
    assert np.allclose(model.positions.weight.grad.data, pos.grad.numpy())


def test_positional_embedding_lengths_and_offsets():
    pos = PositionalEmbedding(6, 2, rng=np.random.default_rng(0))
    assert np.array_equal(pos(np.zeros((3, 4), np.int64)).data, pos.weight.data[:4])
    assert np.array_equal(pos(2, start=4).data, pos.weight.data[4:6])
    assert pos(0).shape == (0, 2)
    with pytest.raises(ValueError, match="max_len=6"):
        pos(7)
    with pytest.raises(ValueError):
        pos(2, start=5)


@given(st.integers(0, 40), st.integers(1, 17))
def test_sinusoidal_matches_the_formula(max_len, dim):
    pe = sinusoidal_encoding(max_len, dim)
    assert pe.shape == (max_len, dim) and pe.dtype == np.float32 and not pe.requires_grad
    expected = np.zeros((max_len, dim))
    for p in range(max_len):
        for i in range(dim):
            angle = p / 10000 ** ((i - i % 2) / dim)
            expected[p, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    assert np.allclose(pe.data, expected, atol=1e-6)


def test_sinusoidal_matches_a_pytorch_construction(torch):
    """The construction of the PyTorch tutorial's PositionalEncoding (Vaswani et al.), in float64."""
    max_len, d = 64, 32
    position = torch.arange(max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe = torch.zeros(max_len, d)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    assert np.allclose(sinusoidal_encoding(max_len, d).data, pe.numpy(), atol=1e-6)
