"""What the training-step benchmarks share: their options, the alternating worker processes, the summary.

Each benchmark (mlp_step.py, cnn_step.py, gpt_step.py) supplies its worker, its numerics check and what it
measures; this module runs one worker process per framework and round, alternating which goes first, takes
the TinyTorch/PyTorch ratio per round, and writes bench/results/<stem>-<time>.json.
Both workers run with the same allocator setting: freed memory kept for reuse (`--default-allocator`: glibc's).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
FRAMEWORKS = ("tinytorch", "torch")


class Metric:
    """What a worker reports (`key` in its JSON line), how a round stores it (`tinytorch_<suffix>`) and prints it."""

    def __init__(self, key, suffix, unit, spec):
        self.key, self.suffix, self.unit, self.spec = key, suffix, unit, spec

    def show(self, value):
        return f"{value:{self.spec}} {self.unit}"


MS_PER_STEP = Metric("ms_per_step", "ms", "ms", ".2f")


def parse_args(doc, add_arguments=None):
    """The benchmarks' common options (plus what `add_arguments(parser)` adds)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if add_arguments:
        add_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of one process per framework (default 5)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions per process; the median is kept")
    parser.add_argument("--min-time", type=float, default=0.25, help="seconds per repetition (default 0.25)")
    parser.add_argument("--threads", type=int, help="BLAS/OpenMP threads of both workers (default: the machine's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder for the JSON result")
    parser.add_argument("--profile", action="store_true", help="profile TinyTorch's step instead of benchmarking")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's malloc as it is in both workers (default: both keep freed memory, "
                             "tinytorch.train.memory.keep_freed_memory)")
    parser.add_argument("--worker", choices=list(FRAMEWORKS), help=argparse.SUPPRESS)
    return parser.parse_args()


def start(doc, worker, profile, consequence, add_arguments=None):
    """Parse the options; in a worker process run `worker(args)`, with --profile `profile(args)`, and return
    (None, None); otherwise (args, load average before starting), after warning when the machine is busy."""
    args = parse_args(doc, add_arguments)
    if (args.worker or args.profile) and not args.default_allocator:
        from tinytorch.train.memory import keep_freed_memory
        keep_freed_memory()  # the same allocator setting for both frameworks (module 12, section 4.7)
    if args.worker:
        worker(args)
        return None, None
    if args.profile:
        profile(args)
        return None, None
    return args, warn_if_busy(consequence)


def warn_if_busy(consequence):
    """The load average before starting; a warning when other processes compete for the cores."""
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"warning: load average {load_before[0]:.2f} before starting: other processes compete for the "
              f"{os.cpu_count()} cores{consequence}")
    return load_before


def run_worker(script, framework, args, extra=()):
    """One worker process of `script` for `framework`; its last stdout line, parsed as JSON."""
    command = [sys.executable, str(script), "--worker", framework, *extra, "--repeat", str(args.repeat),
               "--min-time", str(args.min_time), *(["--default-allocator"] if args.default_allocator else [])]
    env = dict(os.environ)
    if args.threads:
        env.update({name: str(args.threads) for name in THREAD_VARIABLES})
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(script, args, metric, worst, label="numerics", extra=(), indent=""):
    """Print the numerics line, run the alternating rounds; the ratio statistics, the rounds and the last timings."""
    print(f"{label}: TinyTorch matches PyTorch in float64 (worst relative difference {worst:.1e})")
    rounds = []
    for index in range(args.rounds):
        order = FRAMEWORKS if index % 2 == 0 else FRAMEWORKS[::-1]
        timing = {framework: run_worker(script, framework, args, extra) for framework in order}
        ours, theirs = timing["tinytorch"][metric.key], timing["torch"][metric.key]
        rounds.append({"order": list(order), f"tinytorch_{metric.suffix}": ours, f"torch_{metric.suffix}": theirs,
                       "ratio": ours / theirs})
        print(f"{indent}round {index + 1}/{args.rounds}: TinyTorch {metric.show(ours)}, "
              f"PyTorch {metric.show(theirs)}, ratio {ours / theirs:.2f}x", flush=True)
    ratios = [r["ratio"] for r in rounds]
    statistics_ = {"median_ratio": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios),
                   f"median_tinytorch_{metric.suffix}": statistics.median(r[f"tinytorch_{metric.suffix}"] for r in rounds),
                   f"median_torch_{metric.suffix}": statistics.median(r[f"torch_{metric.suffix}"] for r in rounds)}
    return statistics_, rounds, timing


def write_summary(stem, args, load_before, summary, machine=None):
    """Add threads, load, machine and command to `summary`; write it as bench/results/<stem>-<time>.json."""
    summary.setdefault("threads", args.threads or "default")
    summary["allocator"] = "default malloc" if args.default_allocator else "keep_freed_memory() in both workers"
    summary["load_average_before_after"] = [load_before, os.getloadavg()]
    summary["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          **(machine or {})}
    summary["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    return path


def torch_train_step(model, optimizer, x, y):
    """PyTorch's step reporting what TinyTorch's train_step does: the loss and the number of correct predictions."""
    import torch

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
    return step
