"""Module 16 (tinytorch.nn.transformer): MLP, pre-norm block and GPT through gradcheck on every element of
inputs and parameters, against PyTorch with copied weights, causality, weight tying, and generation with
and without the KV cache (identical greedy output); the float32 GELU's table against float64 Phi."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinytorch.core.autograd import gradcheck
from tinytorch.core.tensor import Tensor
from tinytorch.nn.attention import causal_mask
from tinytorch.nn.losses import cross_entropy
from tinytorch.nn.activations import gelu, normal_cdf
from tinytorch.nn.transformer import GPT, MLP, TransformerBlock, blocked_gelu, generate, interpolated_cdf


def leaf(rng, *shape):
    return Tensor(rng.standard_normal(shape), requires_grad=True)


def gpt64(seed=0, **overrides):
    config = dict(vocab_size=7, context_length=5, embed_dim=4, num_heads=2, num_layers=2, dtype=np.float64,
                  rng=np.random.default_rng(seed))
    return GPT(**{**config, **overrides})


# --- blocked_gelu: float32 from a table, float64 as module 03 ---------------------------------------------
EVERY_RANGE = np.concatenate([np.linspace(-20, 20, 400_001), np.random.default_rng(5).standard_normal(10_000) * 3])


def test_interpolated_phi_is_within_float32_rounding_everywhere():
    error = np.abs(interpolated_cdf(EVERY_RANGE.astype(np.float32)) - normal_cdf(EVERY_RANGE))
    assert error.max() < 1.2e-7, f"interpolated Phi is {error.max():.1e} off (one float32 step at 1 is 1.2e-7)"


def test_blocked_gelu_float32_is_module_03_gelu_to_float32_rounding():
    x = EVERY_RANGE.astype(np.float32)
    exact = gelu(Tensor(x.astype(np.float64))).data
    error = np.abs(blocked_gelu(Tensor(x), block=1000).data - exact) / np.maximum(1, np.abs(exact))
    assert error.max() < 2.5e-7, f"blocked_gelu(float32) is {error.max():.1e} off module 03's float64 GELU"


def test_blocked_gelu_float64_is_module_03_gelu_and_passes_gradcheck():
    x = leaf(np.random.default_rng(6), 3, 7) * 3
    assert np.array_equal(blocked_gelu(x, block=5).data, gelu(x).data)
    assert gradcheck(lambda t: blocked_gelu(t, block=5), leaf(np.random.default_rng(7), 3, 7))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_gelu_special_values_are_module_03s(dtype):
    special = np.array([-np.inf, -1e30, -20.0, -0.0, 0.0, 20.0, 1e30, np.inf, np.nan], dtype=dtype)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(blocked_gelu(Tensor(special)).data, gelu(Tensor(special)).data)


def test_blocked_gelu_float32_matches_torch_forward_and_backward(torch):
    x = np.random.default_rng(8).standard_normal((64, 96)).astype(np.float32) * 3
    upstream = np.random.default_rng(9).standard_normal(x.shape).astype(np.float32)
    ours = Tensor(x, requires_grad=True)
    out = blocked_gelu(ours, block=1000)
    out.backward(upstream)
    theirs = torch.tensor(x, requires_grad=True)
    expected = torch.nn.functional.gelu(theirs)
    expected.backward(torch.tensor(upstream))
    # PyTorch's float32 GELU, 0.5 x (1 + erf(x / sqrt 2)), loses ~1e-6 to cancellation where x < -3: ours is closer
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(ours.grad.data, theirs.grad.numpy(), rtol=1e-5, atol=1e-6)


# --- gradcheck on every element (float64) -------------------------------------------------------------------
def test_mlp_gradcheck():
    mlp = MLP(4, dtype=np.float64, rng=np.random.default_rng(0))
    assert gradcheck(lambda x, *params: mlp(x), leaf(np.random.default_rng(1), 2, 3, 4), *mlp.parameters())


@pytest.mark.parametrize("bias", [True, False])
def test_block_gradcheck(bias):
    block = TransformerBlock(4, 2, bias=bias, dtype=np.float64, rng=np.random.default_rng(2))
    assert gradcheck(lambda x, *params: block(x), leaf(np.random.default_rng(3), 2, 3, 4), *block.parameters())


@pytest.mark.parametrize("tie_weights", [False, True])
def test_gpt_loss_gradcheck_every_parameter(tie_weights):
    model = gpt64(tie_weights=tie_weights)
    idx = np.random.default_rng(4).integers(0, 7, size=(2, 5))
    targets = np.random.default_rng(5).integers(0, 7, size=10)
    # perturb the position table too: it starts at exactly 0 only for some rows, so gradients are generic
    assert gradcheck(lambda *params: cross_entropy(model(idx).reshape(10, 7), targets), *model.parameters())


# --- structure ------------------------------------------------------------------------------------------------
def test_pre_norm_residual_and_causality():
    rng = np.random.default_rng(6)
    block = TransformerBlock(8, 2, dtype=np.float64, rng=rng)
    x = Tensor(rng.standard_normal((2, 6, 8)))
    later = x.data.copy()
    later[:, 4:] += 1
    assert np.allclose(block(Tensor(later)).data[:, :4], block(x).data[:, :4])
    for p in (block.attn.out.weight, block.attn.out.bias, block.mlp.proj.weight, block.mlp.proj.bias):
        p.data[...] = 0
    assert np.array_equal(block(x).data, x.data)


def test_gpt_parameter_count_tying_and_context():
    model, tied = gpt64(), gpt64(tie_weights=True)
    per_block = 2 * 2 * 4 + (4 * 12 + 12) + (4 * 4 + 4) + (4 * 16 + 16) + (16 * 4 + 4)
    expected = 7 * 4 + 5 * 4 + 2 * per_block + 2 * 4 + 4 * 7
    assert sum(p.size for p in model.parameters()) == expected
    assert sum(p.size for p in tied.parameters()) == expected - 4 * 7 and tied.head is None
    with pytest.raises(ValueError, match="exceed the context length 5"):
        model(np.zeros((1, 6), dtype=np.int64))


# --- against PyTorch, weights copied ------------------------------------------------------------------------------
def torch_gpt(torch, ours):
    """The same GPT in PyTorch (nn.MultiheadAttention, nn.LayerNorm, exact GELU), weights copied from `ours`."""
    nn, F = torch.nn, torch.nn.functional
    C, V = ours.tok_emb.weight.shape[1], ours.vocab_size
    t = lambda a: torch.tensor(a.data)

    class Block(nn.Module):
        def __init__(self, block):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.attn = nn.MultiheadAttention(C, block.attn.num_heads, batch_first=True)
            self.fc, self.proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
            with torch.no_grad():
                for mine, theirs in ((block.ln1, self.ln1), (block.ln2, self.ln2)):
                    theirs.weight.copy_(t(mine.weight)), theirs.bias.copy_(t(mine.bias))
                self.attn.in_proj_weight.copy_(t(block.attn.qkv.weight).T)
                self.attn.in_proj_bias.copy_(t(block.attn.qkv.bias))
                self.attn.out_proj.weight.copy_(t(block.attn.out.weight).T)
                self.attn.out_proj.bias.copy_(t(block.attn.out.bias))
                for mine, theirs in ((block.mlp.fc, self.fc), (block.mlp.proj, self.proj)):
                    theirs.weight.copy_(t(mine.weight).T), theirs.bias.copy_(t(mine.bias))

        def forward(self, x):
            h = self.ln1(x)
            blocked = torch.tensor(~causal_mask(x.shape[1]))
            x = x + self.attn(h, h, h, attn_mask=blocked, need_weights=False)[0]
            return x + self.proj(F.gelu(self.fc(self.ln2(x))))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Parameter(t(ours.tok_emb.weight))
            self.pos = nn.Parameter(t(ours.pos_emb.weight))
            self.blocks = nn.ModuleList(Block(b) for b in ours.blocks)
            self.ln_f = nn.LayerNorm(C)
            with torch.no_grad():
                self.ln_f.weight.copy_(t(ours.ln_f.weight)), self.ln_f.bias.copy_(t(ours.ln_f.bias))
            self.head = nn.Parameter(t(ours.head.weight)) if ours.head is not None else None

        def forward(self, idx):
            x = self.tok[idx] + self.pos[: idx.shape[1]]
            for block in self.blocks:
                x = block(x)
            x = self.ln_f(x)
            return x @ (self.head if self.head is not None else self.tok.T)

    return Model()


@pytest.mark.parametrize("tie_weights", [False, True])
def test_gpt_matches_torch_loss_and_gradients(torch, tie_weights):
    ours = gpt64(seed=7, vocab_size=11, context_length=8, embed_dim=8, num_heads=2, num_layers=2, tie_weights=tie_weights)
    theirs = torch_gpt(torch, ours)
    rng = np.random.default_rng(8)
    idx, targets = rng.integers(0, 11, size=(3, 8)), rng.integers(0, 11, size=24)
    loss = cross_entropy(ours(idx).reshape(24, 11), targets)
    loss.backward()
    expected = torch.nn.functional.cross_entropy(theirs(torch.tensor(idx)).reshape(24, 11), torch.tensor(targets))
    expected.backward()
    assert abs(loss.item() - expected.item()) < 1e-10
    assert np.allclose(ours.tok_emb.weight.grad.data, theirs.tok.grad.numpy(), rtol=1e-8, atol=1e-12)
    assert np.allclose(ours.pos_emb.weight.grad.data, theirs.pos.grad.numpy(), rtol=1e-8, atol=1e-12)
    assert np.allclose(ours.blocks[0].attn.qkv.weight.grad.data, theirs.blocks[0].attn.in_proj_weight.grad.numpy().T,
                       rtol=1e-8, atol=1e-12)
    assert np.allclose(ours.blocks[1].mlp.fc.weight.grad.data, theirs.blocks[1].fc.weight.grad.numpy().T, rtol=1e-8, atol=1e-12)
    assert np.allclose(ours.ln_f.weight.grad.data, theirs.ln_f.weight.grad.numpy(), rtol=1e-8, atol=1e-12)


# --- generation ------------------------------------------------------------------------------------------------
@given(prompt=st.integers(1, 5), new=st.integers(1, 9), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_cached_and_uncached_greedy_generation_are_identical(prompt, new, batch, seed):
    model = gpt64(seed=seed % 7, context_length=6, embed_dim=8)
    start = np.random.default_rng(seed).integers(0, 7, size=(batch, prompt))
    cached = generate(model, start, new, greedy=True, use_cache=True)
    assert cached.shape == (batch, prompt + new) and np.array_equal(cached[:, :prompt], start)
    assert np.array_equal(cached, generate(model, start, new, greedy=True, use_cache=False))


def test_cached_and_uncached_sampling_draw_the_same_tokens():
    model = gpt64(seed=3, context_length=6, embed_dim=8)
    start = np.array([[1, 2], [3, 4]])
    sample = lambda use_cache: generate(model, start, 9, top_k=4, temperature=0.8, use_cache=use_cache,
                                        rng=np.random.default_rng(11))
    assert np.array_equal(sample(True), sample(False))


def test_the_generate_method_is_the_function():
    model = gpt64(seed=1, context_length=8, embed_dim=8)
    start = np.array([[0, 1, 2]])
    assert np.array_equal(generate(model, start, 5, greedy=True), model.generate(start, 5, greedy=True, use_cache=False))
