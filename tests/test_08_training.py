"""Module 08 (tinytorch.train.loop): schedule, clipping, accumulation, checkpoints and exact resumption.

No new differentiable operation lives in module 08 (it composes modules 01-07), so there is nothing to
gradcheck; its numbers are compared with PyTorch's instead: the schedule with CosineAnnealingLR,
clipping with clip_grad_norm_, and whole optimizer steps (with accumulation) with torch.optim.SGD.
"""
import json
import math
import os
import signal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinytorch.core.tensor import Tensor
from tinytorch.data import DataLoader, RandomHorizontalFlip, TensorDataset
from tinytorch.nn.layers import Dropout, Flatten, Linear, ReLU, Sequential, manual_seed
from tinytorch.nn.losses import cross_entropy
from tinytorch.optim import SGD, Adam
from tinytorch.train.loop import (CheckpointError, Trainer, WarmupCosine, clip_grad_norm, evaluate, load_checkpoint,
                                  save_checkpoint, train_step)


def mlp(seed=0, dtype=np.float64, dropout=0.0):
    manual_seed(seed)
    layers = [Linear(6, 16, dtype=dtype), ReLU()] + ([Dropout(dropout)] if dropout else []) + [Linear(16, 3, dtype=dtype)]
    return Sequential(*layers)


def batch(n, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return Tensor(rng.standard_normal((n, 6)).astype(dtype)), Tensor(rng.integers(0, 3, size=n), dtype=np.int64)


def weights(model):
    return [p.data.copy() for p in model.parameters()]


# --- schedule and clipping against PyTorch --------------------------------------------------------------

class Holder:
    lr = 0.3


@given(total=st.integers(1, 60), warmup=st.integers(0, 60), min_lr=st.sampled_from([0.0, 0.01]))
def test_schedule_shape(total, warmup, min_lr):
    if warmup > total:
        with pytest.raises(ValueError, match="warmup_steps"):
            WarmupCosine(Holder(), total, warmup)
        return
    schedule = WarmupCosine(Holder(), total, warmup, min_lr)
    rates = [schedule.lr_at(k) for k in range(total + 3)]
    assert np.allclose(rates[:warmup], [0.3 * (k + 1) / warmup for k in range(warmup)])
    assert all(a >= b - 1e-15 for a, b in zip(rates[warmup:], rates[warmup + 1:])), "non-increasing after warm-up"
    assert np.allclose(rates[total:], min_lr) and rates[min(warmup, total - 1)] <= 0.3 + 1e-12


def test_cosine_matches_pytorch(torch):
    parameter = torch.nn.Parameter(torch.zeros(1))
    reference = torch.optim.SGD([parameter], lr=0.3)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=25, eta_min=0.01)
    holder = Holder()
    schedule = WarmupCosine(holder, total_steps=25, min_lr=0.01)
    for _ in range(25):
        assert np.isclose(holder.lr, reference.param_groups[0]["lr"], rtol=1e-12, atol=1e-15)
        reference.step()
        annealing.step()
        schedule.step()


@given(shapes=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 4)), min_size=1, max_size=4),
       max_norm=st.floats(0.01, 10.0), seed=st.integers(0, 1000))
def test_clip_grad_norm_matches_pytorch(torch, shapes, max_norm, seed):
    rng = np.random.default_rng(seed)
    grads = [rng.standard_normal(shape) * 3 for shape in shapes]
    mine = [Tensor(np.zeros(shape), requires_grad=True) for shape in shapes]
    theirs = [torch.zeros(shape, requires_grad=True) for shape in shapes]
    for m, t, g in zip(mine, theirs, grads):
        m.grad, t.grad = Tensor(g.copy()), torch.from_numpy(g.copy())
    norm = clip_grad_norm(mine, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert np.isclose(norm, expected.item(), rtol=1e-12)
    for m, t in zip(mine, theirs):
        assert np.allclose(m.grad.data, t.grad.numpy(), rtol=1e-12, atol=1e-15)


# --- steps and accumulation ------------------------------------------------------------------------------

@given(cuts=st.lists(st.integers(1, 31), min_size=3, max_size=3, unique=True), momentum=st.sampled_from([0.0, 0.9]))
def test_accumulating_micro_batches_equals_the_full_batch(cuts, momentum):
    """4 micro-batches (of any sizes) give the full batch's gradient and step."""
    x, y = batch(32)
    bounds = [0, *sorted(cuts), 32]
    micro = [(x[a:b], y[a:b]) for a, b in zip(bounds, bounds[1:])]
    full, split = mlp(), mlp()
    full_opt, split_opt = SGD(full.parameters(), lr=0.1, momentum=momentum), SGD(split.parameters(), lr=0.1, momentum=momentum)
    for _ in range(2):
        whole = train_step(full, cross_entropy, full_opt, [(x, y)])
        parts = train_step(split, cross_entropy, split_opt, micro)
        assert len(micro) == 4 and whole.count == parts.count == 32 and whole.correct == parts.correct
        assert np.isclose(whole.loss, parts.loss, rtol=1e-13)
        for p, q in zip(full.parameters(), split.parameters()):
            assert np.allclose(p.grad.data, q.grad.data, rtol=1e-12, atol=1e-15)
            assert np.allclose(p.data, q.data, rtol=1e-12, atol=1e-15)


def test_train_step_matches_a_pytorch_step(torch):
    """Clipping, momentum, weight decay and 2 accumulated micro-batches: the same weights as PyTorch after 3 steps."""
    model = mlp(3)
    reference = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    linears = [m for m in model.modules() if isinstance(m, Linear)]
    with torch.no_grad():
        for mine, theirs in zip(linears, [reference[0], reference[2]]):
            theirs.weight.copy_(torch.from_numpy(mine.weight.data.T.copy()))
            theirs.bias.copy_(torch.from_numpy(mine.bias.data.copy()))
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    torch_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    for step in range(3):
        x, y = batch(20, seed=step)
        result = train_step(model, cross_entropy, optimizer, [(x[:12], y[:12]), (x[12:], y[12:])], clip_norm=0.5)
        torch_optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(reference(torch.from_numpy(x.data)), torch.from_numpy(y.data))
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        torch_optimizer.step()
        assert np.isclose(result.loss, loss.item(), rtol=1e-12) and np.isclose(result.grad_norm, norm.item(), rtol=1e-12)
    for mine, theirs in zip(linears, [reference[0], reference[2]]):
        assert np.allclose(mine.weight.data, theirs.weight.detach().numpy().T, rtol=1e-10, atol=1e-12)
        assert np.allclose(mine.bias.data, theirs.bias.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_evaluate_leaves_the_model_as_it_was():
    model = mlp(dropout=0.5)
    x, y = batch(30)
    before = weights(model)
    first = evaluate(model, [(x[:7], y[:7]), (x[7:], y[7:])], cross_entropy)
    whole = evaluate(model, [(x, y)], cross_entropy)
    assert np.isclose(first["loss"], whole["loss"], rtol=1e-12) and first["accuracy"] == whole["accuracy"]
    assert model.training and all(np.array_equal(a, p.data) for a, p in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters()), "no gradients from evaluation"


# --- checkpoints -------------------------------------------------------------------------------------------

def trained(seed=0):
    model = mlp(seed, np.float32, dropout=0.2)
    optimizer = Adam(model.parameters(), lr=0.01)
    schedule = WarmupCosine(optimizer, total_steps=20, warmup_steps=3)
    x, y = batch(16, dtype=np.float32)
    for _ in range(4):
        train_step(model, cross_entropy, optimizer, [(x, y)])
        schedule.step()
    return model, optimizer, schedule


def test_checkpoint_round_trip_without_pickle(tmp_path):
    model, optimizer, schedule = trained()
    save_checkpoint(tmp_path / "c.npz", model, optimizer, schedule, extra={"note": [1, 2]})
    with np.load(tmp_path / "c.npz", allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
    fresh, fresh_opt, fresh_schedule = trained(seed=1)
    assert load_checkpoint(tmp_path / "c.npz", fresh, fresh_opt, fresh_schedule) == {"note": [1, 2]}
    assert all(np.array_equal(a, b) for a, b in zip(weights(model), weights(fresh)))
    mine, theirs = optimizer.state_dict(), fresh_opt.state_dict()
    assert mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine)
    assert fresh_schedule.step_count == 4 and fresh_opt.lr == optimizer.lr


@pytest.mark.parametrize("cut", [0, 10, 100, 0.5, -1])
def test_truncated_checkpoint_is_refused_and_nothing_changes(tmp_path, cut):
    model, optimizer, schedule = trained()
    path = tmp_path / "c.npz"
    save_checkpoint(path, model, optimizer, schedule)
    raw = path.read_bytes()
    damaged = raw[:int(len(raw) * cut) if isinstance(cut, float) else cut]
    path.write_bytes(damaged)
    target, target_opt, target_schedule = trained(seed=2)
    before, before_opt = weights(target), target_opt.state_dict()
    with pytest.raises(CheckpointError, match=r"c\.npz: not a complete checkpoint.*earlier checkpoint"):
        load_checkpoint(path, target, target_opt, target_schedule)
    assert all(np.array_equal(a, b) for a, b in zip(before, weights(target)))
    assert all(np.array_equal(before_opt[k], v) for k, v in target_opt.state_dict().items())
    assert target_schedule.step_count == 4 and path.read_bytes() == damaged, "the file itself is left alone"


def test_checkpoint_for_another_model_is_refused_all_or_nothing(tmp_path):
    model, optimizer, schedule = trained()
    save_checkpoint(tmp_path / "c.npz", model, optimizer, schedule)
    other = Sequential(Linear(6, 16), ReLU(), Dropout(0.2), Linear(16, 3))
    other_opt = Adam(other.parameters(), lr=0.01)
    with pytest.raises(CheckpointError, match="c.npz"):
        load_checkpoint(tmp_path / "c.npz", other, SGD(other.parameters(), lr=0.1), WarmupCosine(other_opt, 20, 3))
    same, same_opt, _ = trained(seed=5)
    before = weights(same)
    with pytest.raises(CheckpointError, match="schedule"):
        load_checkpoint(tmp_path / "c.npz", same, same_opt, WarmupCosine(same_opt, 99, 3))
    assert all(np.array_equal(a, b) for a, b in zip(before, weights(same))), "the model part was rolled back"


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, schedule = trained()
    path = tmp_path / "c.npz"
    save_checkpoint(path, model, optimizer, schedule)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("simulated crash while writing")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, model, optimizer, schedule)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


# --- the Trainer: resumption is exact ------------------------------------------------------------------------

def make_trainer(run_dir=None, accumulate=1, loss_fn=cross_entropy):
    rng = np.random.default_rng(4)
    images = rng.standard_normal((44, 1, 2, 3)).astype(np.float32)  # tiny "images", so that flips apply
    data = TensorDataset(images, rng.integers(0, 3, size=44))
    model = _model_with_dropout()
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    loader = DataLoader(data, batch_size=8, shuffle=True, seed=2, transform=RandomHorizontalFlip())
    steps = 3 * math.ceil(len(loader) / accumulate)
    return Trainer(model, optimizer, loss_fn, loader, DataLoader(data, batch_size=20), WarmupCosine(optimizer, steps, 2),
                   clip_norm=1.0, accumulate=accumulate, run_dir=run_dir, progress=False)


def _model_with_dropout():
    manual_seed(9)
    return Sequential(Flatten(), Linear(6, 16), ReLU(), Dropout(0.3), Linear(16, 3))


def test_two_epochs_equal_one_epoch_checkpoint_resume_one_epoch(tmp_path):
    straight = make_trainer()
    straight.fit(2)
    manual_seed(123)  # disturb the global generator: the checkpoint must restore it
    first = make_trainer(tmp_path)
    first.fit(1)
    manual_seed(456)
    resumed = make_trainer(tmp_path).resume(tmp_path / "checkpoint.npz")
    assert resumed.epoch == 1 and resumed.batch == 0
    resumed.fit(2)
    for a, b in zip(weights(straight.model), weights(resumed.model)):
        assert np.array_equal(a, b), "bit-identical parameters"
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    assert [r["val_accuracy"] for r in straight.history] == [r["val_accuracy"] for r in resumed.history]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "best.npz").is_file()


def test_ctrl_c_saves_and_resuming_mid_epoch_is_exact(tmp_path):
    calls = []

    def interrupting_loss(outputs, targets):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to the Trainer's handler
        return cross_entropy(outputs, targets)

    stopped = make_trainer(tmp_path, accumulate=2, loss_fn=interrupting_loss)
    stopped.fit(3)
    assert stopped.stop_requested and stopped.epoch == 0 and stopped.batch == 6, "stopped after the 3rd optimizer step"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the previous handler is restored"
    straight = make_trainer(accumulate=2)
    straight.fit(3)
    resumed = make_trainer(tmp_path, accumulate=2).resume(tmp_path / "checkpoint.npz")
    assert resumed.batch == 6
    resumed.fit(3)
    for a, b in zip(weights(straight.model), weights(resumed.model)):
        assert np.array_equal(a, b)
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]


def test_resume_refuses_a_different_run_or_a_truncated_file(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.fit(1)
    with pytest.raises(CheckpointError, match="accumulate"):
        make_trainer(tmp_path, accumulate=2).resume(tmp_path / "checkpoint.npz")
    good = (tmp_path / "checkpoint.npz").read_bytes()
    (tmp_path / "checkpoint.npz").write_bytes(good[: len(good) // 3])
    fresh = make_trainer(tmp_path)
    before = weights(fresh.model)
    with pytest.raises(CheckpointError, match="checkpoint.npz: not a complete checkpoint"):
        fresh.resume(tmp_path / "checkpoint.npz")
    assert all(np.array_equal(a, b) for a, b in zip(before, weights(fresh.model))) and fresh.epoch == 0


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_run_files_get_the_permissions_the_umask_gives(tmp_path, umask):
    previous = os.umask(umask)
    try:
        make_trainer(tmp_path).fit(1)
    finally:
        os.umask(previous)
    for name in ("checkpoint.npz", "best.npz", "metrics.jsonl", "curves.png"):
        mode = (tmp_path / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, f"{name}: mode {oct(mode)} under umask {oct(umask)}"
