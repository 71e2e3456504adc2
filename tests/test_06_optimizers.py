"""Module 06 (tinytorch.optim): 20-step trajectories against torch.optim, in-place float32 updates, state_dict resume."""
import io

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinytorch.core.tensor import Tensor
from tinytorch.optim import SGD, Adam, AdamW, Optimizer

STEPS = 20
SHAPES = {"W": (4, 3), "b": (3,), "c": (2,)}

# (tinytorch class, torch.optim class name, keyword arguments): every option of each optimizer
CONFIGS = [
    (SGD, "SGD", dict(lr=0.05)),
    (SGD, "SGD", dict(lr=0.05, weight_decay=0.1)),
    (SGD, "SGD", dict(lr=0.05, momentum=0.9)),
    (SGD, "SGD", dict(lr=0.02, momentum=0.5, weight_decay=0.3)),
    (SGD, "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    (SGD, "SGD", dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.05)),
    (Adam, "Adam", dict()),
    (Adam, "Adam", dict(lr=0.05, betas=(0.8, 0.95), eps=1e-4)),
    (Adam, "Adam", dict(lr=0.01, weight_decay=0.1)),
    (Adam, "Adam", dict(lr=0.02, betas=(0.0, 0.5), weight_decay=0.5)),
    (AdamW, "AdamW", dict()),
    (AdamW, "AdamW", dict(lr=0.05, weight_decay=0.3)),
    (AdamW, "AdamW", dict(lr=0.01, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.0)),
]
CONFIG_IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for cls, _, kw in CONFIGS]


def initial_values(seed=0):
    """The starting values of the raw parameters W, b and c."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}


def loss_terms(params, step, data, square, power4):
    """A deterministic, non-quadratic loss; `c` takes part only in even steps (its grad stays None otherwise)."""
    X, Y = data
    W, b, c = params["W"], params["b"], params["c"]
    loss = square(X @ W + b - Y).mean() + power4(W).sum() * 0.05
    if step % 2 == 0:
        loss = loss + (power4(c) * 0.1 + c * 0.5).sum()
    return loss


def data(seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((5, 4)), rng.standard_normal((5, 3))


def run_ours(cls, kwargs, steps, dtype=np.float64, trajectory=None):
    """`steps` steps from the initial values; the values after each step are appended to `trajectory`."""
    params = {k: Tensor(v.astype(dtype), requires_grad=True) for k, v in initial_values().items()}
    optimizer = cls(list(params.values()), **kwargs)
    X, Y = (Tensor(a.astype(dtype)) for a in data())
    for step in range(steps):
        optimizer.zero_grad()
        loss_terms(params, step, (X, Y), lambda t: t ** 2, lambda t: t ** 4).backward()
        optimizer.step()
        if trajectory is not None:
            trajectory.append({k: p.data.copy() for k, p in params.items()})
    return params, optimizer


def torch_trajectory(torch, name, kwargs, steps):
    params = {k: torch.tensor(v, requires_grad=True) for k, v in initial_values().items()}
    optimizer = getattr(torch.optim, name)(list(params.values()), **kwargs)
    X, Y = (torch.tensor(a) for a in data())
    trajectory = []
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_terms(params, step, (X, Y), lambda t: t ** 2, lambda t: t ** 4).backward()
        optimizer.step()
        trajectory.append({k: p.detach().numpy().copy() for k, p in params.items()})
    return trajectory


@pytest.mark.parametrize("cls, torch_name, kwargs", CONFIGS, ids=CONFIG_IDS)
def test_trajectory_matches_torch_optim(torch, cls, torch_name, kwargs):
    """Every parameter after each of 20 steps equals torch.optim's (float64, within 1e-6)."""
    ours = []
    run_ours(cls, kwargs, STEPS, trajectory=ours)
    theirs = torch_trajectory(torch, torch_name, kwargs, STEPS)
    for step, (mine, reference) in enumerate(zip(ours, theirs), start=1):
        for name in SHAPES:
            np.testing.assert_allclose(mine[name], reference[name], rtol=0, atol=1e-6,
                                       err_msg=f"{cls.__name__}({kwargs}): {name} after {step} steps")
    moved = np.abs(ours[-1]["c"] - initial_values()["c"]).max()
    assert moved > 1e-3, "the loss must move every parameter, or the comparison proves little"


@pytest.mark.parametrize("cls, torch_name, kwargs", [CONFIGS[5], CONFIGS[9], CONFIGS[11]], ids=[CONFIG_IDS[i] for i in (5, 9, 11)])
def test_small_model_with_cross_entropy_matches_torch(torch, cls, torch_name, kwargs):
    """An MLP (Linear, ReLU, Linear) trained on cross-entropy for 20 steps, against the same model in torch."""
    from tinytorch.nn.layers import Linear, ReLU, Sequential
    from tinytorch.nn.losses import cross_entropy

    rng = np.random.default_rng(4)
    model = Sequential(Linear(6, 5), ReLU(), Linear(5, 3))
    for param in model.parameters():
        param.data = rng.standard_normal(param.shape)
    weights = [torch.tensor(p.data.copy(), requires_grad=True) for p in model.parameters()]
    X, y = rng.standard_normal((8, 6)), rng.integers(0, 3, size=8)
    ours, theirs = cls(model.parameters(), **kwargs), getattr(torch.optim, torch_name)(weights, **kwargs)
    W1, b1, W2, b2 = weights
    for _ in range(STEPS):
        ours.zero_grad()
        cross_entropy(model(Tensor(X)), y).backward()
        ours.step()
        theirs.zero_grad()
        logits = torch.relu(torch.tensor(X) @ W1 + b1) @ W2 + b2
        torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()
        theirs.step()
    for mine, reference in zip(model.parameters(), weights):
        np.testing.assert_allclose(mine.data, reference.detach().numpy(), rtol=0, atol=1e-6)


def test_adam_first_step_without_bias_correction_would_differ(torch):
    """Guards the comparison itself: the first Adam step moves each element by about lr."""
    ours, _ = run_ours(Adam, dict(lr=0.1), 1)
    start = initial_values()
    np.testing.assert_allclose(np.abs(ours["W"].data - start["W"]), 0.1, atol=1e-6)


@pytest.mark.parametrize("cls, torch_name, kwargs", CONFIGS, ids=CONFIG_IDS)
def test_updates_are_in_place_and_float32(cls, torch_name, kwargs):
    params, optimizer = run_ours(cls, kwargs, 3, dtype=np.float32)
    arrays = [p.data for p in optimizer.params]
    optimizer.step()
    assert all(p.data is a and p.dtype == np.float32 for p, a in zip(optimizer.params, arrays))
    for state in optimizer.state:
        for value in state.values():
            assert not isinstance(value, np.ndarray) or value.dtype == np.float32


@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple), seed=st.integers(0, 2**16),
       config=st.sampled_from(CONFIGS))
def test_one_step_on_any_shape_matches_torch(torch, shape, seed, config):
    cls, torch_name, kwargs = config
    rng = np.random.default_rng(seed)
    start, grads = np.asarray(rng.standard_normal(shape)), rng.standard_normal((3, *shape))
    ours = Tensor(start.copy(), requires_grad=True)
    theirs = torch.tensor(start.copy(), requires_grad=True)
    optimizers = cls([ours], **kwargs), getattr(torch.optim, torch_name)([theirs], **kwargs)
    for g in grads:
        ours.grad, theirs.grad = Tensor(g), torch.tensor(g)
        for optimizer in optimizers:
            optimizer.step()
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=0, atol=1e-9)


def test_zero_grad_sets_none_and_parameters_without_grad_are_untouched():
    params, optimizer = run_ours(Adam, dict(lr=0.1), 1)  # step 0 is even: c took part once
    c_before, c_state = params["c"].data.copy(), {k: np.copy(v) for k, v in optimizer.state[2].items()}
    optimizer.zero_grad()
    assert all(p.grad is None for p in optimizer.params)
    (params["W"] ** 2).sum().backward()
    optimizer.step()
    np.testing.assert_array_equal(params["c"].data, c_before)
    assert all(np.array_equal(optimizer.state[2][k], v) for k, v in c_state.items())
    assert optimizer.state[0]["step"] == 2 and optimizer.state[2]["step"] == 1


def test_gradients_are_not_modified_by_weight_decay():
    w = Tensor(np.ones(3), requires_grad=True)
    for optimizer in (SGD([w], lr=0.1, momentum=0.9, weight_decay=0.5), Adam([w], weight_decay=0.5), AdamW([w])):
        w.grad = Tensor(np.full(3, 2.0))
        optimizer.step()
        np.testing.assert_array_equal(w.grad.data, 2.0)


# --- state_dict ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, torch_name, kwargs", CONFIGS, ids=CONFIG_IDS)
def test_resume_is_bit_identical(cls, torch_name, kwargs, dtype):
    """10 steps == 5 steps, state_dict, a new optimizer (other hyperparameters), load_state_dict, 5 more steps."""
    straight, _ = run_ours(cls, kwargs, 10, dtype)
    params, first = run_ours(cls, kwargs, 5, dtype)
    saved = first.state_dict()
    for value in saved.values():
        assert isinstance(value, (int, float, bool, np.ndarray)), type(value)
    second = cls(list(params.values()), **{**kwargs, "lr": 123.0})
    second.load_state_dict(saved)
    assert second.lr == kwargs.get("lr", 1e-3)
    X, Y = (Tensor(a.astype(dtype)) for a in data())
    for step in range(5, 10):
        second.zero_grad()
        loss_terms(params, step, (X, Y), lambda t: t ** 2, lambda t: t ** 4).backward()
        second.step()
    for name in SHAPES:
        np.testing.assert_array_equal(params[name].data, straight[name].data, err_msg=name)


@pytest.mark.parametrize("cls, torch_name, kwargs", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_survives_npz_without_pickle(cls, torch_name, kwargs):
    params, optimizer = run_ours(cls, kwargs, 3)
    buffer = io.BytesIO()
    np.savez(buffer, **optimizer.state_dict())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        loaded = {key: stored[key] for key in stored.files}
    fresh = cls(list(params.values()), **kwargs)
    fresh.load_state_dict(loaded)
    reference = optimizer.state_dict()
    restored = fresh.state_dict()
    assert set(restored) == set(reference)
    for key, value in reference.items():
        assert type(restored[key]) is type(value), key
        np.testing.assert_array_equal(restored[key], value, err_msg=key)


def test_state_dict_holds_copies():
    params, optimizer = run_ours(Adam, dict(lr=0.1), 2)
    saved = optimizer.state_dict()
    snapshot = {k: np.copy(v) for k, v in saved.items()}
    optimizer.step()
    for key, value in snapshot.items():
        np.testing.assert_array_equal(saved[key], value, err_msg=key)
    assert saved["exp_avg.0"] is not optimizer.state[0]["exp_avg"]


def expect_refusal(optimizer, state, *words):
    before = optimizer.state_dict()
    with pytest.raises(ValueError) as error:
        optimizer.load_state_dict(state)
    for word in words:
        assert word in str(error.value), (word, str(error.value))
    after = optimizer.state_dict()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=f"a refused load changed {key}")


def test_load_refuses_other_shapes_naming_both():
    _, adam = run_ours(Adam, dict(lr=0.1), 2)
    transposed = {k: Tensor(np.zeros(v[::-1]), requires_grad=True) for k, v in SHAPES.items()}
    other = Adam(list(transposed.values()), lr=0.5)
    expect_refusal(other, adam.state_dict(), "exp_avg.0", "(4, 3)", "(3, 4)", "exp_avg_sq.0")


def test_load_refuses_other_optimizers_and_parameter_counts():
    _, adam = run_ours(Adam, dict(lr=0.1), 2)
    _, momentum = run_ours(SGD, dict(lr=0.1, momentum=0.9), 2)
    params = [Tensor(np.zeros(s), requires_grad=True) for s in SHAPES.values()]
    expect_refusal(SGD(params, lr=0.3, momentum=0.5), adam.state_dict(), "missing", "momentum_buffer.0", "unexpected", "exp_avg.0")
    expect_refusal(SGD(params, lr=0.3), momentum.state_dict(), "unexpected", "momentum_buffer.2")
    expect_refusal(SGD(params[:2], lr=0.3), SGD(params, lr=0.1).state_dict(), "3 parameters")
    expect_refusal(Adam(params[:2]), adam.state_dict(), "unexpected", "exp_avg.2")


# --- construction --------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [
    lambda p: SGD(p, lr=-0.1), lambda p: SGD(p, lr=0.1, momentum=-0.9), lambda p: SGD(p, lr=0.1, weight_decay=-1),
    lambda p: SGD(p, lr=0.1, nesterov=True), lambda p: Adam(p, lr=-1e-3), lambda p: Adam(p, betas=(0.9, 1.0)),
    lambda p: Adam(p, betas=(-0.5, 0.9)), lambda p: Adam(p, eps=-1.0), lambda p: AdamW(p, weight_decay=-0.01),
])
def test_bad_hyperparameters_are_refused(build):
    with pytest.raises(ValueError):
        build([Tensor(np.zeros(2), requires_grad=True)])


def test_bad_parameter_lists_are_refused():
    w = Tensor(np.zeros(2), requires_grad=True)
    with pytest.raises(ValueError, match="no parameters"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="parameter 1"):
        SGD([w, Tensor(np.zeros(2))], lr=0.1)
    with pytest.raises(TypeError):
        Adam([np.zeros(2)])
    with pytest.raises(ValueError, match="more than once"):
        Adam([w, w])
    assert len(SGD((p for p in [w]), lr=0.1).params) == 1


def test_defaults_and_base_class():
    w = Tensor(np.zeros(2), requires_grad=True)
    adam, adamw = Adam([w]), AdamW([w])
    assert (adam.lr, adam.beta1, adam.beta2, adam.eps, adam.weight_decay) == (1e-3, 0.9, 0.999, 1e-8, 0.0)
    assert adamw.weight_decay == 1e-2 and isinstance(adamw, Adam) and isinstance(adamw, Optimizer)
    sgd = SGD([w], lr=0.1)
    assert (sgd.momentum, sgd.nesterov, sgd.weight_decay) == (0.0, False, 0.0) and sgd.state == [{}]
    w.grad = Tensor(np.ones(2))
    with pytest.raises(NotImplementedError, match="_update"):
        Optimizer([w]).step()


# --- closed-form and hand-computed steps: these fail on a wrong update with or without PyTorch ---


def run_on_quadratic(optimizer_of, start, curvature, steps):
    """Minimise f(w) = 1/2 sum(curvature * w^2) (gradient curvature * w) from `start`; the values after each step."""
    w = Tensor(np.array(start, dtype=np.float64), requires_grad=True)
    optimizer = optimizer_of([w])
    values = []
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * Tensor(np.asarray(curvature, dtype=np.float64)) * w * w).sum().backward()
        optimizer.step()
        values.append(w.data.copy())
    return np.array(values)


def test_sgd_follows_the_geometric_closed_form():
    """Plain SGD on 1/2 h w^2 multiplies w by (1 - lr h) each step; weight decay adds wd to h."""
    got = run_on_quadratic(lambda p: SGD(p, lr=0.1), [1.0, -2.0], [1.0, 3.0], 10)
    want = np.array([[1.0, -2.0] * (1 - 0.1 * np.array([1.0, 3.0])) ** t for t in range(1, 11)])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = run_on_quadratic(lambda p: SGD(p, lr=0.1, weight_decay=0.5), [1.0], [1.0], 5)
    np.testing.assert_allclose(got[:, 0], (1 - 0.1 * 1.5) ** np.arange(1, 6), rtol=1e-12)


def test_momentum_and_nesterov_follow_the_heavy_ball_recurrence():
    """v <- mu v + g, w <- w - lr v (Nesterov: w <- w - lr (g + mu v)), as PyTorch defines them."""
    lr, mu, h = 0.1, 0.9, 2.0
    for nesterov in (False, True):
        got = run_on_quadratic(lambda p: SGD(p, lr=lr, momentum=mu, nesterov=nesterov), [1.0], [h], 8)[:, 0]
        w, v, want = 1.0, 0.0, []
        for _ in range(8):
            g = h * w
            v = mu * v + g
            w -= lr * (g + mu * v if nesterov else v)
            want.append(w)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"nesterov={nesterov}")


def test_adam_first_step_is_lr_times_the_sign_of_the_gradient():
    """With bias correction, m_hat = g and v_hat = g^2 after one step, so the step is lr * g / (|g| + eps)."""
    got = run_on_quadratic(lambda p: Adam(p, lr=0.01, eps=1e-8), [1.0, -3.0, 1e-3], [1.0, 1.0, 1.0], 1)[0]
    g = np.array([1.0, -3.0, 1e-3])
    np.testing.assert_allclose(got, g - 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_adam_second_step_by_hand():
    b1, b2, lr, eps, h = 0.9, 0.999, 0.1, 1e-8, 3.0
    got = run_on_quadratic(lambda p: Adam(p, lr=lr, betas=(b1, b2), eps=eps), [2.0], [h], 2)[:, 0]
    w, m, v, want = 2.0, 0.0, 0.0, []
    for t in (1, 2):
        g = h * w
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        w -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        want.append(w)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_adamw_decays_the_weights_apart_from_the_gradient():
    """AdamW: w <- w (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps); on the first step that is lr * sign(g)."""
    got = run_on_quadratic(lambda p: AdamW(p, lr=0.01, weight_decay=0.5, eps=1e-8), [2.0, -1.0], [1.0, 1.0], 1)[0]
    w = np.array([2.0, -1.0])
    np.testing.assert_allclose(got, w * (1 - 0.01 * 0.5) - 0.01 * np.sign(w), rtol=1e-9)
    coupled = run_on_quadratic(lambda p: Adam(p, lr=0.01, weight_decay=0.5, eps=1e-8), [2.0, -1.0], [1.0, 1.0], 1)[0]
    np.testing.assert_allclose(coupled, w - 0.01 * np.sign(w), rtol=1e-9, err_msg="Adam's L2 decay goes into g")
