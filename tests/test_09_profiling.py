"""Module 09 (tinytorch.profile): the timer, the memory tracker, graph bytes, FLOP counting, the per-op
profiler over forward and backward, the roofline, and the training-health monitor inside module 08's Trainer.
Behaviour only: no assertion depends on how fast this machine is."""
import json
import math
import time
import tracemalloc
import warnings

import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.nn.activations import relu
from tinytorch.nn.layers import Linear, Module, ReLU, Sequential, manual_seed
from tinytorch.profile import (FLOP_COUNTERS, HealthMonitor, MemoryTracker, Profiler, Timing, attainable_gflops,
                               count_flops, flop_counter, graph_bytes, machine_peaks, measure, save_roofline)


def leaf(*shape, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


# --- timer ----------------------------------------------------------------------------------------

def test_measure_warms_up_then_takes_every_sample():
    calls = []
    timing = measure(lambda: calls.append(1), warmup=3, repeats=4)
    assert len(calls) == 7 and len(timing.samples) == 4
    assert timing.median == sorted(timing.samples)[1] / 2 + sorted(timing.samples)[2] / 2
    assert timing.spread == max(timing.samples) - min(timing.samples) >= 0


def test_measure_loops_short_functions_and_refuses_one_sample():
    calls = []
    timing = measure(lambda: calls.append(1), warmup=0, repeats=2, min_time=0.005)
    assert len(calls) > 10 and all(s < 1e-3 for s in timing.samples)
    sleep = measure(lambda: time.sleep(0.003), warmup=0, repeats=2)
    assert min(sleep.samples) >= 0.003
    with pytest.raises(ValueError):
        measure(lambda: None, repeats=1)
    with pytest.raises(ValueError):
        Timing([])


# --- memory ---------------------------------------------------------------------------------------

def test_memory_tracker_sees_numpy_buffers():
    with MemoryTracker() as m:
        kept = np.empty(2_000_000, dtype=np.float32)  # 8 MB kept
        np.ones(4_000_000).sum()  # 32 MB temporary
    assert 8e6 <= m.live_bytes < 8.5e6 and 40e6 <= m.peak_bytes < 41e6
    assert not tracemalloc.is_tracing()
    del kept


def test_memory_tracker_leaves_foreign_tracing_on():
    tracemalloc.start()
    try:
        with MemoryTracker() as m:
            data = np.zeros(1_000_000)
        assert tracemalloc.is_tracing() and 8e6 <= m.live_bytes < 8.5e6
    finally:
        tracemalloc.stop()
    del data


def test_graph_bytes_counts_each_buffer_once_and_no_leaves():
    x, w = leaf(64, 32), leaf(32, 16)
    h = relu(x @ w)  # two (64, 16) float64 results
    assert graph_bytes(h) == 2 * 64 * 16 * 8
    view = h.reshape(-1)[::2]
    assert graph_bytes(view) == 2 * 64 * 16 * 8
    assert graph_bytes(x) == 0 and graph_bytes(x.reshape(-1)) == 0
    loss = view.sum()
    loss.backward()
    assert graph_bytes(loss) <= 8


# --- FLOPs --------------------------------------------------------------------------------------------

def test_count_flops_per_linear_layer_and_restores_the_model():
    manual_seed(0)
    model = Sequential(Linear(10, 20), ReLU(), Linear(20, 5))
    flops = count_flops(model, Tensor(np.zeros((3, 10))))
    assert flops.by_layer == {"layers.0": 2 * 3 * 10 * 20, "layers.2": 2 * 3 * 20 * 5}
    assert flops.total == 1800 and "1800" not in repr(flops) or "MFLOP" in repr(flops)
    assert all("forward" not in vars(m) for m in model.modules())


def test_flop_counter_is_extensible_and_counts_the_outermost_registered_layer():
    class Block(Module):  # two Linears inside a registered block: counted once, by the block's rule
        def __init__(self):
            super().__init__()
            self.a, self.b = Linear(4, 4), Linear(4, 4)

        def forward(self, x):
            return self.b(self.a(x))

    @flop_counter(Block)
    def block_flops(layer, inputs, output):
        return 1000

    try:
        model = Sequential(Block(), Linear(4, 2))
        flops = count_flops(model, Tensor(np.zeros((1, 4))))
        assert flops.by_layer == {"layers.0": 1000, "layers.1": 2 * 4 * 2}
    finally:
        del FLOP_COUNTERS[Block]


# --- profiler --------------------------------------------------------------------------------------------

def test_profiler_records_forward_and_backward_ops_with_flops_and_bytes(tmp_path):
    x, w = leaf(8, 16), leaf(16, 4, seed=1)
    with Profiler() as prof:
        relu(x @ w).sum().backward()
    mm, mm_back = prof.by_op["matmul"], prof.by_op["matmul_backward"]
    assert mm.calls == mm_back.calls == 1 and mm.flops == 2 * 8 * 16 * 4 and mm_back.flops == 2 * mm.flops
    assert mm.bytes_in == (8 * 16 + 16 * 4) * 8 and mm.bytes_out == 8 * 4 * 8
    assert mm.intensity == mm.flops / (mm.bytes_in + mm.bytes_out)
    assert prof.total_seconds() <= prof.wall_seconds + 1e-4
    table = prof.table().splitlines()
    seconds = [float(line.split()[2]) for line in table[1:-1]]
    assert seconds == sorted(seconds, reverse=True)
    path = prof.save_plot(tmp_path / "ops.png")
    assert path.stat().st_size > 1000


def test_profiler_removes_its_hook_even_after_an_error():
    x = leaf(3)
    with pytest.raises(RuntimeError):
        with Profiler() as prof:
            relu(x)
            raise RuntimeError("boom")
    relu(x)
    assert prof.by_op["relu"].calls == 1


def test_roofline_and_machine_peaks(tmp_path):
    assert attainable_gflops(0.5, 100.0, 10.0) == 5.0 and attainable_gflops(50.0, 100.0, 10.0) == 100.0
    assert np.allclose(attainable_gflops(np.array([1.0, 10.0, 100.0]), 100.0, 10.0), [10.0, 100.0, 100.0])
    peaks = machine_peaks(n=128, elements=200_000, repeats=2)
    assert peaks.gflops > 0 and peaks.bandwidth_gbs > 0 and peaks.ridge == peaks.gflops / peaks.bandwidth_gbs
    with Profiler() as prof:
        (leaf(32, 32) @ leaf(32, 32) + 1.0).sum()
    assert save_roofline(prof, peaks, tmp_path / "roof.png").stat().st_size > 1000


# --- training health ----------------------------------------------------------------------------------------

def test_health_monitor_names_the_first_nonfinite_op():
    x = Tensor([4.0, 0.0], dtype=np.float64, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"), HealthMonitor(Linear(1, 1)) as m:
        warnings.simplefilter("always")
        (x.sqrt() * 3.0).sum().backward()
    assert m.nonfinite_op == "sqrt (backward)" and any("sqrt" in str(w.message) for w in caught)


def test_health_monitor_inside_the_trainer_logs_to_the_metrics_file(tmp_path):
    from tinytorch.data import DataLoader, TensorDataset
    from tinytorch.nn.losses import cross_entropy
    from tinytorch.optim import SGD
    from tinytorch.train.loop import Trainer
    manual_seed(0)
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    model = Sequential(Linear(6, 8), ReLU(), Linear(8, 3))
    monitor = HealthMonitor(model, metrics_path=tmp_path / "metrics.jsonl")
    trainer = Trainer(model, SGD(model.parameters(), lr=0.1), monitor.watch(cross_entropy),
                      DataLoader(TensorDataset(images, labels), 16, shuffle=True), run_dir=tmp_path, progress=False,
                      log=monitor.log)
    with monitor:
        trainer.fit(2)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        assert set(record["grad_norms"]) == {"layers.0", "layers.2"}
        assert all(math.isfinite(v) and v > 0 for v in record["grad_norms"].values())
        assert record["loss_spikes"] == 0 and record["nonfinite_op"] is None
    assert len(monitor.losses) == 2 * 4


def test_health_monitor_counts_loss_spikes():
    monitor = HealthMonitor(Linear(1, 1), spike_factor=2.0, window=10)
    watched = monitor.watch(lambda value: Tensor(value))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        for value in [1.0] * 6 + [5.0, 1.0, float("nan")]:
            watched(value)
    assert monitor.loss_spikes == 2
