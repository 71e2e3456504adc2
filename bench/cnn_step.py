"""Benchmark: one CNN training step, TinyTorch vs PyTorch: LeNet-5 and the modern CNN of ../shared/perf-anchors.md §3 (b, c).

Batch 128 of synthetic CIFAR-shaped `randn` images (NCHW float32) with random labels, mean cross-entropy,
plain SGD lr 0.01. A step is zero_grad -> forward -> cross-entropy -> backward -> SGD step, plus reading
the loss and counting correct predictions, on both sides. TinyTorch's step is
`tinytorch.train.loop.train_step` (what the milestones' Trainer runs); LeNet-5 is the milestone's own model
(`build_lenet5` in milestones/03_lenet5_cifar10.py), the modern CNN is built here from the same layers.

The frameworks never share a process: each round runs one worker per framework back to back, alternating
which goes first, and the TinyTorch/PyTorch ratio is taken per round; the median ratio and its spread go to
bench/results/cnn_step-<time>.json (gitignored). Before timing, a float64 check confirms both frameworks
compute the same loss and gradients from the same weights.

    python bench/cnn_step.py                          # both models, 5 rounds
    python bench/cnn_step.py --model lenet5 --rounds 3 --min-time 0.1
    python bench/cnn_step.py --threads 1              # both frameworks on one thread each
    python bench/cnn_step.py --profile --model modern # where TinyTorch's step goes (module 09's Profiler)
"""
import importlib.util
import json
import sys
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_harness.py, also when loaded by path
import _harness  # noqa: E402  (the benchmarks' shared harness)

ROOT = _harness.ROOT
BATCH, CLASSES, LR = 128, 10, 0.01
MODELS = {"lenet5": "LeNet-5 (62,006 parameters)", "modern": "modern CNN (1,116,970 parameters), 4 convs 3x3 pad 1"}


def build_lenet5(dtype):
    """`build_lenet5` of the LeNet-5 milestone, so the benchmark times exactly the model it trains."""
    spec = importlib.util.spec_from_file_location("lenet5_cifar10", ROOT / "milestones" / "03_lenet5_cifar10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_lenet5(dtype=dtype)


def build_modern(dtype):
    """perf-anchors §3c: conv 3-32, 32-32, pool, 32-64, 64-64, pool (all 3x3 pad 1, ReLU), Linear 4096-256-10."""
    from tinytorch.nn.conv import Conv2d, MaxPool2d
    from tinytorch.nn.layers import Flatten, Linear, ReLU, Sequential
    conv = lambda c_in, c_out: [Conv2d(c_in, c_out, 3, padding=1, dtype=dtype), ReLU()]
    return Sequential(*conv(3, 32), *conv(32, 32), MaxPool2d(2), *conv(32, 64), *conv(64, 64), MaxPool2d(2),
                      Flatten(), Linear(4096, 256, dtype=dtype), ReLU(), Linear(256, CLASSES, dtype=dtype))


def torch_model(name):
    import torch.nn as nn
    if name == "lenet5":
        return nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, CLASSES))
    conv = lambda c_in, c_out: [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*conv(3, 32), *conv(32, 32), nn.MaxPool2d(2), *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4096, 256), nn.ReLU(), nn.Linear(256, CLASSES))


def synthetic_batch(seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32), rng.integers(0, CLASSES, size=BATCH)


def tinytorch_step(name, dtype="float32"):
    import numpy as np
    from tinytorch.core.tensor import Tensor
    from tinytorch.nn.losses import cross_entropy
    from tinytorch.optim import SGD
    from tinytorch.train.loop import train_step
    model = (build_lenet5 if name == "lenet5" else build_modern)(np.dtype(dtype))
    optimizer = SGD(model.parameters(), lr=LR)
    images, labels = synthetic_batch()
    x, y = Tensor(images.astype(dtype)), Tensor(labels, dtype=np.int64)
    return (lambda: train_step(model, cross_entropy, optimizer, [(x, y)])), model


def torch_step(name, dtype="float32"):
    import torch
    torch.manual_seed(0)
    model = torch_model(name).to(getattr(torch, dtype))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    images, labels = synthetic_batch()
    x, y = torch.from_numpy(images).to(getattr(torch, dtype)), torch.from_numpy(labels)
    return _harness.torch_train_step(model, optimizer, x, y), model


def check_numerics(name):
    """Same weights and batch in float64: the loss, every gradient and every updated weight agree to 1e-5."""
    import numpy as np
    import torch
    tt_step, tt_model = tinytorch_step(name, "float64")
    pt_step, pt_model = torch_step(name, "float64")
    ours = [p for _, p in tt_model.named_parameters()]
    theirs = list(pt_model.parameters())
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    as_torch = lambda p: p.data.T if p.ndim == 2 else p.data  # Linear weights are (in, out) here, (out, in) there
    with torch.no_grad():
        for mine, other in zip(ours, theirs):
            other.copy_(torch.from_numpy(np.ascontiguousarray(as_torch(mine))))
    loss_tt, loss_pt = tt_step().loss, pt_step().loss
    worst = abs(loss_tt - loss_pt) / abs(loss_pt)
    for mine, other in zip(ours, theirs):
        for a, b in ((as_torch(mine.grad), other.grad.numpy()), (as_torch(mine), other.detach().numpy())):
            worst = max(worst, float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30)))
    if worst > 1e-5:
        raise SystemExit(f"numerics check failed for {name}: TinyTorch and PyTorch differ by {worst:.2e} (relative)")
    return worst


def worker(framework, name, repeat, min_time):
    from tinytorch.profile import measure
    step = (tinytorch_step if framework == "tinytorch" else torch_step)(name)[0]
    timing = measure(step, warmup=3, repeats=repeat, min_time=min_time)
    print(json.dumps({"framework": framework, "model": name, "ms_per_step": timing.median * 1e3,
                      "samples_ms": [s * 1e3 for s in timing.samples]}))


def profile(name, steps=5):
    """Module 09's per-op profile of TinyTorch's step: where the time goes, forward and backward."""
    from tinytorch.profile import Profiler
    step = tinytorch_step(name)[0]
    for _ in range(2):
        step()
    with Profiler() as prof:
        for _ in range(steps):
            step()
    print(f"TinyTorch {MODELS[name]}: {steps} train steps, {prof.wall_seconds / steps * 1e3:.1f} ms per step (wall, "
          "profiler on); self time per op over all steps:")
    print(prof.table(top=16))
    path = prof.save_plot(ROOT / "bench" / "results" / f"cnn_step-profile-{name}.png")
    print(f"plot: {path}")


def benchmark(name, args):
    worst = check_numerics(name)
    stats, rounds, _ = _harness.compare(__file__, args, _harness.Metric("ms_per_step", "ms", "ms", ".1f"), worst,
                                        label=name, extra=("--model", name), indent="  ")
    return {"model": MODELS[name], **stats, "target_ratio": 2.5, "numerics_worst_relative_difference": worst,
            "rounds": rounds}


def main():
    names = lambda args: list(MODELS) if args.model == "all" else [args.model]
    args, load_before = _harness.start(
        __doc__, lambda args: worker(args.worker, names(args)[0], args.repeat, args.min_time),
        lambda args: [profile(name) for name in names(args)], "; treat the figures as noisy",
        add_arguments=lambda parser: parser.add_argument("--model", choices=[*MODELS, "all"], default="all"))
    if args is None:
        return
    results = {name: benchmark(name, args) for name in names(args)}
    summary = {"benchmark": "cnn_train_step", "batch": BATCH, "threads": args.threads or "default", "results": results}
    path = _harness.write_summary("cnn_step", args, load_before, summary)
    for name, result in results.items():
        print(f"{name}: TinyTorch / PyTorch median {result['median_ratio']:.2f}x over {len(result['rounds'])} rounds "
              f"(range {result['min_ratio']:.2f}-{result['max_ratio']:.2f}; must be <= 2.5x); medians "
              f"{result['median_tinytorch_ms']:.1f} ms vs {result['median_torch_ms']:.1f} ms")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
