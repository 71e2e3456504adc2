"""The LeNet milestones: options, one-line errors (exit 2), and the quick mode on a slice of real CIFAR-10;
the CNN benchmark's harness (its models are the milestone's and perf-anchors' and agree with PyTorch).
No timing is asserted."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_milestones import cifar  # noqa: F401  (the fixture: CIFAR-10 present, else skip or fail under CI)

ROOT = Path(__file__).resolve().parents[1]
LENETS = {"02_lenet1_cifar10.py": 4_526, "03_lenet5_cifar10.py": 62_006}
BENCH = ROOT / "bench" / "cnn_step.py"


def run(script, *args, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "milestones" / script), *args], capture_output=True, text=True,
                          cwd=ROOT, **kwargs)


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", sorted(LENETS))
def test_help_and_the_model(script):
    result = run(script, "--help")
    assert result.returncode == 0 and "--quick" in result.stdout and "--resume" in result.stdout
    module = load(ROOT / "milestones" / script, script[:-3])
    build = getattr(module, "build_lenet1" if "lenet1" in script else "build_lenet5")
    assert sum(p.size for p in build().parameters()) == LENETS[script]


@pytest.mark.parametrize("script", sorted(LENETS))
def test_expected_mistakes_are_one_line_and_exit_2(script, tmp_path):
    for args in (["--resume", str(tmp_path / "missing.npz")], ["--epochs", "0"]):
        result = run(script, *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()[-1]) > 10
    broken = tmp_path / "checkpoint.npz"
    broken.write_bytes(b"not a checkpoint")
    result = run(script, "--quick", "--no-progress", "--resume", str(broken))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(LENETS))
def test_quick_mode_learns_on_real_cifar10(script, cifar, tmp_path):  # noqa: F811
    result = run(script, "--quick", "--no-progress", "--run-dir", str(tmp_path), timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.15, f"chance is 0.1; got {summary['test_accuracy']}"
    assert summary["wall_seconds"] > 0 and summary["epochs"] == 2
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and records[-1]["train_loss"] < records[0]["train_loss"]
    assert (tmp_path / "curves.png").stat().st_size > 0 and (tmp_path / "best.npz").is_file()


@pytest.mark.parametrize("model", ["lenet5", "modern"])
def test_cnn_benchmark_models_match_pytorch(torch, model):
    bench = load(BENCH, "cnn_step")
    _, tiny = bench.tinytorch_step(model)
    assert sum(p.size for p in tiny.parameters()) == {"lenet5": 62_006, "modern": 1_116_970}[model]
    if model == "lenet5":
        assert bench.check_numerics(model) < 1e-5  # the modern CNN's check is the same code, 20x the work
