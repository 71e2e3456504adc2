"""The CNN milestone (milestones/04_cnn_cifar10.py): --help, mistakes that exit 2 with one line, and the --quick
smoke run on a slice of real CIFAR-10 (skipped without the data, a failure under CI=true). No timing is asserted."""
import json
import subprocess
import sys

import pytest

from tests.test_milestones import ROOT, cifar  # noqa: F401 (the fixture)

MILESTONE = ROOT / "milestones" / "04_cnn_cifar10.py"


def run(*args, **kwargs):
    return subprocess.run([sys.executable, str(MILESTONE), *args], capture_output=True, text=True, cwd=ROOT, **kwargs)


def test_help_lists_the_options():
    result = run("--help")
    assert result.returncode == 0 and "--quick" in result.stdout and "--resume" in result.stdout


@pytest.mark.parametrize("args, message", [(["--epochs", "0"], "--epochs must be at least 1"),
                                           (["--label-smoothing", "1.5"], "--label-smoothing must be in [0, 1)"),
                                           (["--resume", "no/such/checkpoint.npz"], "no such checkpoint file")])
def test_mistakes_print_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_quick_mode_learns_on_real_cifar10(cifar, tmp_path):  # noqa: F811
    result = run("--quick", "--no-progress", "--run-dir", str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "epoch   2/2" in result.stdout and "test accuracy" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.15, f"chance is 0.1; got {summary['test_accuracy']}"
    assert summary["wall_seconds"] > 0 and set(summary["step_seconds"]) == {"data", "forward", "backward", "optimizer"}
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for name in ("curves.png", "accuracy_vs_time.png", "profile.txt", "checkpoint.npz", "best.npz"):
        assert (tmp_path / name).stat().st_size > 0, name
