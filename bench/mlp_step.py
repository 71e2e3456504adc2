"""Benchmark: one MLP training step, TinyTorch vs PyTorch (the model of ../shared/perf-anchors.md §3a).

Model 3072-512-256-10 (flatten, Linear, ReLU, Linear, ReLU, Linear), batch 128, float32, synthetic
`randn` images and random labels, mean cross-entropy, plain SGD lr 0.01. A step is zero_grad ->
forward -> cross-entropy -> backward -> optimizer step, plus reading the loss and counting correct
predictions (what the milestone's Trainer logs), on both sides. TinyTorch's step is
`tinytorch.train.loop.train_step`, the function the milestone's Trainer runs, on the milestone's own
model (`build_mlp` in milestones/01_mlp_cifar10.py): the same nn/optim/autograd code, no special path.

The two frameworks never share a process (PyTorch's OpenMP threads compete with OpenBLAS's): each
round runs one worker process per framework, back to back, alternating which goes first, and the
TinyTorch/PyTorch ratio is computed per round. The median ratio and its spread over the rounds go to
bench/results/mlp_step-<time>.json (gitignored). Before timing, a float64 check confirms that both
frameworks compute the same loss and gradients from the same weights.

    python bench/mlp_step.py                  # 5 rounds (about a minute)
    python bench/mlp_step.py --rounds 9 --min-time 0.5
    python bench/mlp_step.py --threads 1      # both frameworks on one thread each
    python bench/mlp_step.py --profile        # where TinyTorch's step spends its time (cProfile)
"""
import importlib.util
import json
import os
import sys
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_harness.py, also when loaded by path
import _harness  # noqa: E402  (the benchmarks' shared harness)

ROOT = _harness.ROOT
BATCH, IN_FEATURES, CLASSES, LR = 128, 3072, 10, 0.01


def milestone_model_builder():
    """`build_mlp` of the milestone script, so the benchmark times exactly the model the milestone trains."""
    sys.path.insert(0, str(ROOT / "milestones"))  # where the script finds milestones/_common.py
    try:
        spec = importlib.util.spec_from_file_location("mlp_cifar10", ROOT / "milestones" / "01_mlp_cifar10.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "milestones"))
    return module.build_mlp


def synthetic_batch(seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    return images, rng.integers(0, CLASSES, size=BATCH)


def tinytorch_step(dtype="float32"):
    """A TinyTorch training-step closure, its model and its batch."""
    import numpy as np
    from tinytorch.core.tensor import Tensor
    from tinytorch.nn.losses import cross_entropy
    from tinytorch.optim import SGD
    from tinytorch.train.loop import train_step

    model = milestone_model_builder()(dtype=np.dtype(dtype))  # the milestone's model, in float32 or float64
    optimizer = SGD(model.parameters(), lr=LR)
    images, labels = synthetic_batch()
    x, y = Tensor(images.astype(dtype)), Tensor(labels, dtype=np.int64)

    def step():
        return train_step(model, cross_entropy, optimizer, [(x, y)])

    return step, model, (x, y)


def torch_step(dtype="float32"):
    """The same step in PyTorch."""
    import torch
    torch.manual_seed(0)
    torch_dtype = getattr(torch, dtype)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(IN_FEATURES, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 256), torch.nn.ReLU(), torch.nn.Linear(256, CLASSES)).to(torch_dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    images, labels = synthetic_batch()
    x, y = torch.from_numpy(images).to(torch_dtype), torch.from_numpy(labels)
    return _harness.torch_train_step(model, optimizer, x, y), model, (x, y)


def worker(framework, repeat, min_time):
    """Time one framework's step in this process; print one JSON line."""
    from tinytorch._measure import median_time
    step = (tinytorch_step if framework == "tinytorch" else torch_step)()[0]
    for _ in range(10):
        step()
    seconds = median_time(step, repeat=repeat, min_time=min_time)
    info = {"framework": framework, "ms_per_step": seconds * 1e3, "repeat": repeat, "min_time_s": min_time}
    if framework == "torch":
        import torch
        info.update(threads=torch.get_num_threads(), version=torch.__version__)
    else:
        import numpy as np
        info.update(version=np.__version__, blas=_blas_name(np))
    print(json.dumps(info))


def _blas_name(np):
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # show_config's layout is not a stable API; the name is informative only
        return "unknown"


def check_numerics():
    """Both frameworks, float64, same weights and batch: loss and every gradient must agree to 1e-5."""
    import numpy as np
    import torch
    tt_step, tt_model, _ = tinytorch_step("float64")
    pt_step, pt_model, _ = torch_step("float64")
    from tinytorch.nn.layers import Linear
    tt_linears = [m for m in tt_model.modules() if isinstance(m, Linear)]
    pt_linears = [m for m in pt_model if isinstance(m, torch.nn.Linear)]
    pairs = [(m.weight, t.weight) for m, t in zip(tt_linears, pt_linears)] + [(m.bias, t.bias) for m, t in zip(tt_linears, pt_linears)]
    with torch.no_grad():
        for mine, theirs in pairs:
            theirs.copy_(torch.from_numpy(mine.data.T.copy() if mine.ndim == 2 else mine.data.copy()))
    loss_tt, loss_pt = tt_step().loss, pt_step().loss
    worst = abs(loss_tt - loss_pt) / abs(loss_pt)
    for mine, theirs in pairs:  # gradients (still held after the step), then the updated weights
        for mine_values, theirs_values in ((mine.grad.data, theirs.grad.numpy()), (mine.data, theirs.detach().numpy())):
            mine_values = mine_values.T if mine.ndim == 2 else mine_values
            scale = np.max(np.abs(theirs_values)) + 1e-30
            worst = max(worst, float(np.max(np.abs(mine_values - theirs_values)) / scale))
    if worst > 1e-5:
        raise SystemExit(f"numerics check failed: TinyTorch and PyTorch differ by {worst:.2e} (relative) after one step")
    return worst


def profile(steps=50):
    """cProfile of TinyTorch's step: the top functions, then the step split into GEMMs, optimizer and the rest."""
    import cProfile
    import pstats
    step = tinytorch_step()[0]
    for _ in range(5):
        step()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(12)
    own = {}
    for (_, _, name), (_, _, tottime, _, _) in stats.stats.items():
        own[name] = own.get(name, 0.0) + tottime
    total = stats.total_tt
    groups = {"forward matmul (3 GEMMs)": own.get("matmul", 0.0),
              "backward matmul rules (5 GEMMs, no dx for the input)": own.get("matmul_backward", 0.0),
              "SGD update": own.get("_update", 0.0)}
    groups["everything else (autograd bookkeeping, ReLU, bias, loss, Python)"] = total - sum(groups.values())
    print(f"TinyTorch step under cProfile: {total / steps * 1e3:.2f} ms (profiling adds overhead to Python calls)")
    for name, seconds in groups.items():
        print(f"  {name:66s} {seconds / steps * 1e3:6.2f} ms  {100 * seconds / total:5.1f} %")


def main():
    args, load_before = _harness.start(__doc__, lambda args: worker(args.worker, args.repeat, args.min_time),
                                       lambda args: profile(),
                                       ", and BLAS threads suffer most from it; the ratio may be distorted")
    if args is None:
        return
    worst = check_numerics()
    stats, rounds, timing = _harness.compare(__file__, args, _harness.MS_PER_STEP, worst)
    summary = {"benchmark": "mlp_train_step", "model": "3072-512-256-10 ReLU MLP, batch 128, float32, SGD lr 0.01",
               **stats, "threads": args.threads or "default", "target_ratio": 1.3,
               "numerics_worst_relative_difference": worst, "rounds": rounds}
    path = _harness.write_summary("mlp_step", args, load_before, summary, machine={
        "tinytorch_worker": timing["tinytorch"], "torch_worker": timing["torch"],
        "blas_threads_env": {k: os.environ.get(k) for k in _harness.THREAD_VARIABLES}})
    print(f"TinyTorch / PyTorch: median {summary['median_ratio']:.2f}x over {len(rounds)} rounds "
          f"(range {summary['min_ratio']:.2f}-{summary['max_ratio']:.2f}; target <= 1.3x); "
          f"medians {summary['median_tinytorch_ms']:.2f} ms vs {summary['median_torch_ms']:.2f} ms")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
