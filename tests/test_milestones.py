"""Milestones (smoke tests of --quick mode on a slice of the real data) and the benchmark's harness.

The quick run needs CIFAR-10 (the shared JPEG copy, a mirror, or the cache): without it the test is
skipped, except under CI=true where the data is part of the environment and its absence is a failure.
No timing is asserted anywhere.
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MILESTONE = ROOT / "milestones" / "01_mlp_cifar10.py"
BENCH = ROOT / "bench" / "mlp_step.py"


def cifar_available():
    from tinytorch.data import CIFAR10, cache_dir, data_mirrors
    places = [p for m in data_mirrors() for p in (m / CIFAR10.jpeg_copy, m / CIFAR10.archive.name, m / CIFAR10.folder)]
    places += list((cache_dir() / "cifar10").glob(f"{CIFAR10.folder}*"))
    return any(p.exists() for p in places)


@pytest.fixture
def cifar():
    if not cifar_available():
        if os.environ.get("CI"):
            pytest.fail("CIFAR-10 not found: CI needs ../shared/data (or $TINYTORCH_DATA) with cifar10/cifar10-jpg.tar.xz")
        pytest.skip("CIFAR-10 not available here (set $TINYTORCH_DATA to a folder holding it)")


def run(*args, **kwargs):
    return subprocess.run([sys.executable, str(MILESTONE), *args], capture_output=True, text=True, cwd=ROOT, **kwargs)


def test_help_lists_the_options():
    result = run("--help")
    assert result.returncode == 0 and "--quick" in result.stdout and "--resume" in result.stdout


@pytest.mark.slow
def test_quick_mode_learns_on_real_cifar10(cifar, tmp_path):
    result = run("--quick", "--no-progress", "--run-dir", str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "epoch   3/3" in result.stdout and "test accuracy" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.2, f"chance is 0.1; got {summary['test_accuracy']}"
    assert summary["val_accuracy"] > 0.2
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3] and lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert (tmp_path / "curves.png").stat().st_size > 0 and (tmp_path / "checkpoint.npz").is_file()


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_run_resumes(cifar, tmp_path):
    process = subprocess.Popen([sys.executable, str(MILESTONE), "--quick", "--no-progress", "--run-dir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in process.stdout:
        if line.startswith("epoch   1/3"):
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=600)
    assert process.returncode == 130, err[-2000:]
    assert "--resume" in out and (tmp_path / "checkpoint.npz").is_file()
    resumed = run("--quick", "--no-progress", "--resume", str(tmp_path / "checkpoint.npz"), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout and "epoch   3/3" in resumed.stdout
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


def test_benchmark_times_the_milestone_model_and_matches_pytorch(torch):
    """The benchmark's TinyTorch step is the milestone's model and train_step; in float64 it agrees with PyTorch."""
    spec = importlib.util.spec_from_file_location("mlp_step", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    _, model, _ = bench.tinytorch_step()
    assert sum(p.size for p in model.parameters()) == 1_707_274, "the model of perf-anchors §3a"
    assert bench.check_numerics() < 1e-5
    result = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "--rounds" in result.stdout
