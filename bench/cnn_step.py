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
    python bench/cnn_step.py --profile --model modern # where TinyTorch's step goes (module 09's Profiler)
"""
import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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

    class Result:
        def __init__(self, loss, correct):
            self.loss, self.correct = loss, correct

    def step():
        optimizer.zero_grad()
        outputs = model(x)
        loss = torch.nn.functional.cross_entropy(outputs, y)
        loss.backward()
        optimizer.step()
        return Result(loss.item(), int((outputs.argmax(dim=1) == y).sum().item()))
    return step, model


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


def run_worker(framework, name, args):
    command = [sys.executable, __file__, "--worker", framework, "--model", name, "--repeat", str(args.repeat),
               "--min-time", str(args.min_time)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(result.stdout.strip().splitlines()[-1])


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
    print(f"{name}: TinyTorch matches PyTorch in float64 (worst relative difference {worst:.1e})")
    rounds = []
    for index in range(args.rounds):
        order = ("tinytorch", "torch") if index % 2 == 0 else ("torch", "tinytorch")
        timing = {framework: run_worker(framework, name, args) for framework in order}
        ratio = timing["tinytorch"]["ms_per_step"] / timing["torch"]["ms_per_step"]
        rounds.append({"order": list(order), "tinytorch_ms": timing["tinytorch"]["ms_per_step"],
                       "torch_ms": timing["torch"]["ms_per_step"], "ratio": ratio})
        print(f"  round {index + 1}/{args.rounds}: TinyTorch {rounds[-1]['tinytorch_ms']:.1f} ms, "
              f"PyTorch {rounds[-1]['torch_ms']:.1f} ms, ratio {ratio:.2f}x", flush=True)
    ratios = [r["ratio"] for r in rounds]
    return {"model": MODELS[name], "median_ratio": statistics.median(ratios), "min_ratio": min(ratios),
            "max_ratio": max(ratios), "median_tinytorch_ms": statistics.median(r["tinytorch_ms"] for r in rounds),
            "median_torch_ms": statistics.median(r["torch_ms"] for r in rounds), "target_ratio": 2.5,
            "numerics_worst_relative_difference": worst, "rounds": rounds}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of one process per framework (default 5)")
    parser.add_argument("--repeat", type=int, default=5, help="timed samples per process; the median is kept")
    parser.add_argument("--min-time", type=float, default=0.25, help="seconds per sample (default 0.25)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder for the JSON result")
    parser.add_argument("--profile", action="store_true", help="profile TinyTorch's step instead of benchmarking")
    parser.add_argument("--worker", choices=["tinytorch", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = list(MODELS) if args.model == "all" else [args.model]
    if args.worker:
        return worker(args.worker, names[0], args.repeat, args.min_time)
    if args.profile:
        for name in names:
            profile(name)
        return
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"warning: load average {load_before[0]:.2f} before starting: other processes compete for the "
              f"{os.cpu_count()} cores; treat the figures as noisy")
    results = {name: benchmark(name, args) for name in names}
    summary = {"benchmark": "cnn_train_step", "batch": BATCH, "results": results,
               "load_average_before_after": [load_before, os.getloadavg()],
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
               "command": " ".join([Path(sys.executable).name, *sys.argv])}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cnn_step-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    for name, result in results.items():
        print(f"{name}: TinyTorch / PyTorch median {result['median_ratio']:.2f}x over {len(result['rounds'])} rounds "
              f"(range {result['min_ratio']:.2f}-{result['max_ratio']:.2f}; must be <= 2.5x); medians "
              f"{result['median_tinytorch_ms']:.1f} ms vs {result['median_torch_ms']:.1f} ms")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
