"""Module 12 (tinytorch.train.memory): checkpointing, mixed precision, loss scaling, data-parallel training.

`checkpoint` is a differentiable operation, so it is gradchecked (float64, every element) and its
gradients must equal the plain run's to the bit; the PyTorch oracle checks the same network's gradients
and the loss scaler's decisions (torch.amp.GradScaler). The data-parallel test really starts 2 MPI ranks
with `mpiexec -n 2` and compares them with one process training on the same global batch.
"""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinytorch.core.autograd import GradcheckError, backward_rule, gradcheck, grad, no_grad
from tinytorch.core.tensor import Tensor, tensor_op
from tinytorch.nn.activations import softmax, tanh
from tinytorch.nn import layers
from tinytorch.nn.layers import Dropout, Linear, Parameter, ReLU, Sequential, manual_seed
from tinytorch.nn.losses import cross_entropy, mse_loss
from tinytorch.optim import SGD, Adam
from tinytorch.train.memory import (LossScaler, MasterWeights, allreduce_gradients, autocast, checkpoint,
                                    checkpoint_sequential, data_parallel_train, demo_problem, mixed_precision_step,
                                    mpiexec, shard_indices)


def deep_mlp(seed=0, depth=4, width=6, dropout=0.0, dtype=np.float64):
    manual_seed(seed)
    blocks = [m for _ in range(depth) for m in (Linear(width, width, dtype=dtype), ReLU())
              + ((Dropout(dropout),) if dropout else ())]
    return Sequential(*blocks, Linear(width, 3, dtype=dtype))


def data(n=10, width=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, width)), Tensor(rng.integers(0, 3, size=n), dtype=np.int64)


def gradients(run, model_seed=0, dropout=0.0, depth=4):
    """Gradients of every parameter and of the input, for the loss through `run(model, x)`."""
    X, Y = data()
    model, x = deep_mlp(model_seed, depth=depth, dropout=dropout), Tensor(X, requires_grad=True)
    manual_seed(11)
    cross_entropy(run(model, x), Y).backward()
    return [p.grad.data for p in model.parameters()] + [x.grad.data]


# --- checkpoint ---------------------------------------------------------------------------------------

def test_checkpoint_passes_gradcheck_for_inputs_and_captured_parameters():
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    x = Tensor(rng.standard_normal((5, 4)), requires_grad=True)
    b = Tensor(rng.standard_normal(3), requires_grad=True)
    gradcheck(lambda x, b, w: checkpoint(lambda a, c: tanh(a @ w + c) * a.sum(axis=1, keepdims=True), x, b),
              x, b, w)


def test_gradcheck_catches_a_checkpoint_rule_that_drops_the_parameters():
    @tensor_op
    def careless(fn, x):
        with no_grad():
            out = fn(Tensor(x.data))
        return Tensor.from_op(out.data, careless, (x,), fn=fn)

    @backward_rule(careless)
    def careless_backward(grad_out, out, x, fn):
        start = Tensor(x.data, requires_grad=True)
        return (grad(fn(start), [start], grad_outputs=grad_out)[0].data,)

    rng = np.random.default_rng(1)
    w = Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    x = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    with pytest.raises(GradcheckError):
        gradcheck(lambda x, w: careless(lambda a: tanh(a @ w), x) * w.sum(), x, w)


@given(depth=st.integers(1, 6), data_=st.data())
def test_checkpoint_sequential_gradients_are_identical_to_the_plain_run(depth, data_):
    layers_count = 2 * depth + 1
    segments = data_.draw(st.integers(1, layers_count))
    plain = gradients(lambda model, x: model(x), depth=depth)
    checked = gradients(lambda model, x: checkpoint_sequential(model, segments, x), depth=depth)
    for a, b in zip(plain, checked):
        assert np.array_equal(a, b)


def test_checkpoint_replays_dropout_and_leaves_the_generator_where_forward_left_it():
    plain = gradients(lambda model, x: model(x), dropout=0.4)
    checked = gradients(lambda model, x: checkpoint_sequential(model, 3, x), dropout=0.4)
    assert all(np.array_equal(a, b) for a, b in zip(plain, checked))
    model, x = deep_mlp(dropout=0.4), Tensor(data()[0], requires_grad=True)
    manual_seed(3)
    checkpoint(model, x).sum().backward()
    after_checkpoint = layers.default_generator.random()
    manual_seed(3)
    model(x).sum().backward()
    assert layers.default_generator.random() == after_checkpoint, "backward's replay must not move the generator"


def test_checkpoint_holds_only_inputs_after_forward():
    rng = np.random.default_rng(0)
    model = deep_mlp(depth=8, width=128)
    x = Tensor(rng.standard_normal((512, 128)), requires_grad=True)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    out = model(x)
    plain = tracemalloc.get_traced_memory()[0] - start
    del out
    start = tracemalloc.get_traced_memory()[0]
    out = checkpoint(model, x)
    checked = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert checked < plain / 10
    assert {id(p) for p in out._parents} == {id(x)} | {id(p) for p in model.parameters()}


def test_checkpoint_works_with_grad_and_leaves_dot_grad_alone():
    X, Y = data()
    model, x = deep_mlp(), Tensor(X, requires_grad=True)
    loss = cross_entropy(checkpoint_sequential(model, 4, x), Y)
    through = grad(loss, [x, *model.parameters()])
    assert x.grad is None and all(p.grad is None for p in model.parameters())
    plain = gradients(lambda m, x: m(x))
    assert all(np.array_equal(a.data, b) for a, b in zip(through, plain[-1:] + plain[:-1]))


def test_checkpoint_without_gradients_records_nothing():
    model, x = deep_mlp(), Tensor(data()[0])
    with no_grad():
        out = checkpoint(model, x)
    assert not out.requires_grad and np.array_equal(out.data, model(x).data)


def test_checkpoint_sequential_refuses_bad_segment_counts():
    model = deep_mlp(depth=2)
    for bad in (0, len(model) + 1):
        with pytest.raises(ValueError, match="segments"):
            checkpoint_sequential(model, bad, Tensor(data()[0]))


def test_checkpointed_gradients_match_pytorch(torch):
    X, Y = data()
    model = deep_mlp()
    ours = gradients(lambda m, x: checkpoint_sequential(m, 3, x))
    layers = [torch.nn.Linear(6, 6) for _ in range(4)] + [torch.nn.Linear(6, 3)]
    for layer, ours_layer in zip(layers, [m for m in model.layers if isinstance(m, Linear)]):
        layer.weight.data = torch.tensor(ours_layer.weight.data.T.copy())
        layer.bias.data = torch.tensor(ours_layer.bias.data.copy())
    net = torch.nn.Sequential(*[m for layer in layers[:-1] for m in (layer, torch.nn.ReLU())], layers[-1])
    x = torch.tensor(X, requires_grad=True)
    out = torch.utils.checkpoint.checkpoint_sequential(net, 3, x, use_reentrant=False)
    torch.nn.functional.cross_entropy(out, torch.tensor(Y.data)).backward()
    theirs = [g for layer in layers for g in (layer.weight.grad.numpy().T, layer.bias.grad.numpy())]
    for a, b in zip(ours[:-1], theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours[-1], x.grad.numpy(), rtol=1e-10, atol=1e-12)


# --- autocast and master weights ----------------------------------------------------------------------

def test_autocast_runs_matmul_in_float16_and_reductions_softmax_losses_in_float32():
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal((6, 3)).astype(np.float32), requires_grad=True)
    x = Tensor(rng.standard_normal((4, 6)).astype(np.float32))
    with autocast():
        logits = x @ w
        assert logits.dtype == np.float16
        assert softmax(logits).dtype == np.float32
        assert logits.sum().dtype == np.float32 and logits.mean().dtype == np.float32
        loss = mse_loss(logits, Tensor(np.zeros((4, 3), dtype=np.float32)))
        assert loss.dtype == np.float32
        ce = cross_entropy(logits, Tensor(np.arange(4) % 3, dtype=np.int64))
    ce.backward()
    assert w.grad.dtype == np.float32
    reference = w.data.astype(np.float16).astype(np.float32)
    x16 = x.data.astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(logits.data.astype(np.float32), x16 @ reference, rtol=2e-3, atol=2e-3)
    assert (x @ w).dtype == np.float32, "the hook is removed on exit"


def test_autocast_keeps_large_float16_sums_finite():
    big = Tensor(np.full(200, 600.0, dtype=np.float16))
    with autocast():
        assert big.sum().item() == 120000.0


def test_master_weights_accumulate_updates_float16_would_lose():
    manual_seed(0)
    model = Sequential(Linear(3, 2))
    start = [p.data.copy() for p in model.parameters()]
    weights = MasterWeights(model)
    optimizer = SGD(weights.parameters(), lr=1e-4)
    for _ in range(20):
        weights.zero_grad()
        for p in model.parameters():
            p.grad = Tensor(np.ones(p.shape, dtype=np.float16))
        weights.grads_to_master()
        optimizer.step()
        weights.master_to_model()
    for master, before, p in zip(weights.parameters(), start, model.parameters()):
        assert master.dtype == np.float32 and p.dtype == np.float16
        np.testing.assert_allclose(master.data, before - 20e-4, atol=1e-6)
        assert np.array_equal(p.data, master.data.astype(np.float16))


def test_mixed_precision_training_learns_and_survives_an_oversized_scale():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 8)).astype(np.float32)
    Y = (X @ rng.standard_normal((8, 3))).argmax(axis=1)
    manual_seed(0)
    model = Sequential(Linear(8, 16), ReLU(), Linear(16, 3))
    weights = MasterWeights(model)
    optimizer = Adam(weights.parameters(), lr=1e-2)
    scaler = LossScaler(init_scale=2.0 ** 30, growth_interval=50)
    losses, skipped = [], 0
    for step in range(80):
        index = rng.integers(0, 256, size=32)
        loss, stepped = mixed_precision_step(model, weights, cross_entropy, optimizer, scaler,
                                             Tensor(X[index].astype(np.float16)), Tensor(Y[index], dtype=np.int64))
        losses.append(loss)
        skipped += not stepped
    assert skipped >= 5, "2^30 overflows float16 gradients: the first steps must be skipped"
    assert scaler.scale_value < 2.0 ** 30
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[skipped:skipped + 10])


# --- loss scaler -----------------------------------------------------------------------------------------

def test_loss_scaler_decisions_match_pytorch_grad_scaler(torch):
    sequence = [[1.0, 2.0], [np.inf, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [np.nan, 0.0], [3.0, 1.0]]
    ours_param = Parameter(np.zeros(2))
    ours_opt, ours = SGD([ours_param], lr=0.1), LossScaler(init_scale=16.0, growth_interval=2)
    their_param = torch.nn.Parameter(torch.zeros(2))
    their_opt = torch.optim.SGD([their_param], lr=0.1)
    theirs = torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=2)
    for grads in sequence:
        scaled = ours.scale_value * np.array(grads)
        ours_param.grad = Tensor(scaled.copy())
        ours.step(ours_opt)
        ours.update()
        their_opt.zero_grad()
        theirs.scale(their_param.sum())  # registers the scale; the gradient is set by hand below
        their_param.grad = torch.tensor(scaled)
        theirs.step(their_opt)
        theirs.update()
        assert ours.scale_value == theirs.get_scale()
        np.testing.assert_allclose(ours_param.data, their_param.detach().numpy())


def test_loss_scaler_state_dict_resumes_exactly():
    param = Parameter(np.zeros(2, dtype=np.float32))
    optimizer = SGD([param], lr=0.1)
    first = LossScaler(init_scale=64.0, growth_interval=3)
    pattern = [[1.0, 1.0], [np.inf, 1.0], [1.0, 1.0], [1.0, 1.0]]
    for grads in pattern:
        param.grad = Tensor(np.array(grads, dtype=np.float32))
        first.step(optimizer)
        first.update()
    second = LossScaler()
    second.load_state_dict(first.state_dict())
    for scaler in (first, second):
        for grads in pattern * 2:
            param.grad = Tensor(np.array(grads, dtype=np.float32))
            scaler.step(optimizer)
            scaler.update()
    assert first.state_dict() == second.state_dict()


# --- data parallel ---------------------------------------------------------------------------------------

@given(n=st.integers(1, 200), per_rank=st.integers(1, 8), world=st.integers(1, 4), seed=st.integers(0, 5),
       epoch=st.integers(0, 3))
def test_shards_partition_each_global_batch_of_the_seeded_order(n, per_rank, world, seed, epoch):
    global_batch = per_rank * world
    shards = [shard_indices(n, global_batch, rank, world, seed, epoch) for rank in range(world)]
    order = np.random.default_rng([seed, epoch]).permutation(n)
    assert all(len(s) == n // global_batch for s in shards)
    for step in range(n // global_batch):
        together = np.concatenate([shards[rank][step] for rank in range(world)])
        assert np.array_equal(together, order[step * global_batch:(step + 1) * global_batch])


class LocalWorld:
    """`size` pretend ranks in one process: each rank's Allreduce contributes a known buffer."""

    def __init__(self, others, size):
        self.others, self.size, self.calls = others, size, 0

    def Get_size(self):
        return self.size

    def Allreduce(self, send, receive):
        self.calls += 1
        receive[...] = send + self.others


def test_allreduce_averages_in_one_call_and_keeps_dtypes():
    a = Parameter(np.ones((2, 3), dtype=np.float32))
    b = Parameter(np.ones(4, dtype=np.float32))
    a.grad, b.grad = Tensor(np.full((2, 3), 3.0, dtype=np.float32)), None
    world = LocalWorld(np.arange(10, dtype=np.float32) * 3, size=3)
    allreduce_gradients([a, b], world)
    assert world.calls == 1
    np.testing.assert_allclose(a.grad.data.ravel(), (3.0 + np.arange(6) * 3) / 3)
    np.testing.assert_allclose(b.grad.data, np.arange(6, 10) * 3 / 3)
    assert a.grad.dtype == b.grad.dtype == np.float32


def test_single_process_data_parallel_loop_is_plain_sgd():
    model, optimizer, X, Y = demo_problem([6, 8, 3], 64, seed=1)
    data_parallel_train(model, optimizer, cross_entropy, X, Y, global_batch=16, steps=6, seed=2)
    reference, ref_opt, _, _ = demo_problem([6, 8, 3], 64, seed=1)
    for epoch in range(2):
        order = np.random.default_rng([2, epoch]).permutation(64)
        for step in range(4 if epoch == 0 else 2):
            index = order[step * 16:(step + 1) * 16]
            ref_opt.zero_grad()
            cross_entropy(reference(Tensor(X[index])), Tensor(Y[index], dtype=np.int64)).backward()
            ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert np.array_equal(p.data, q.data)


def test_two_mpi_ranks_equal_one_process_with_the_same_global_batch():
    """The real thing: `mpiexec -n 2 python -c ...` (mpi4py and mpich from the dev extra)."""
    settings = {"widths": [12, 16, 4], "examples": 96, "global_batch": 16, "steps": 9, "seed": 5}
    result = mpiexec(2, settings, timeout=120)
    assert result["params"].shape[0] == 2
    assert np.array_equal(result["params"][0], result["params"][1]), "both ranks take the same averaged step"
    model, optimizer, X, Y = demo_problem(settings["widths"], settings["examples"], settings["seed"])
    data_parallel_train(model, optimizer, cross_entropy, X, Y, settings["global_batch"], settings["steps"],
                        settings["seed"])
    alone = np.concatenate([p.data.ravel() for p in model.parameters()])
    np.testing.assert_allclose(result["params"][0], alone, rtol=1e-12, atol=1e-13)
    assert result["allreduce"].shape == (2, settings["steps"])


REFAULT_ROUNDS = """
import resource, sys
import numpy as np
from tinytorch.train.memory import keep_freed_memory
if sys.argv[1] == "kept" and not keep_freed_memory():
    print("unsupported"); sys.exit()
faults = []
for _ in range(4):   # a step's pattern: many 2 MiB temporaries, all freed at the end
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(2**19, dtype=np.float32) for _ in range(24)]
    del arrays
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(max(faults[1:]))
"""


@pytest.mark.parametrize("allocator", ["default", "kept"])
def test_keep_freed_memory_stops_a_step_refaulting_its_temporaries(allocator):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", REFAULT_ROUNDS, allocator], capture_output=True, text=True,
                         check=True).stdout.split()[-1]
    if out == "unsupported":
        pytest.skip("this malloc is not glibc's")
    pages = 24 * 2**21 // 4096
    if allocator == "default":  # the cost the setting removes is there to begin with (else this test proves nothing)
        assert int(out) > pages // 2, f"default malloc re-faulted only {out} of {pages} pages per round"
    else:
        assert int(out) < pages // 20, f"after keep_freed_memory() a round still faulted in {out} of {pages} pages"
