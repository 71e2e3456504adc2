"""Milestones (smoke tests of --quick mode on a slice of the real data) and the benchmark's harness.

The quick run needs CIFAR-10 (the shared JPEG copy, a mirror, or the cache): without it the test is
skipped, except under CI=true where the data is part of the environment and its absence is a failure.
No timing is asserted anywhere.
"""
import ast
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
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
    return subprocess.run([sys.executable, str(MILESTONE), *args], capture_output=True, text=True, cwd=ROOT,
                          stdin=subprocess.DEVNULL, **kwargs)


def one_line_exit_2(result, *expected):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def test_help_lists_the_options():
    result = run("--help")
    assert result.returncode == 0 and "--quick" in result.stdout and "--resume" in result.stdout


@pytest.mark.parametrize("args, expected", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--val-size", "60000"], "--val-size must be between 1 and 49999"),
    (["--resume", "missing/checkpoint.npz"], "no such checkpoint"),
    (["--resume", "JUNK"], "not a complete checkpoint"),
])
def test_expected_mistakes_are_one_line_and_write_nothing(args, expected, tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    args = [str(tmp_path / "junk.npz") if a == "JUNK" else a for a in args]
    result = run(*args, "--no-progress", "--run-dir", str(tmp_path / "run"), timeout=120)
    one_line_exit_2(result, expected)
    assert not (tmp_path / "run").exists()


def project_copy(destination):
    """tinytorch and the milestones somewhere without ../shared/data beside them."""
    for name in ("tinytorch", "milestones"):
        shutil.copytree(ROOT / name, destination / name, ignore=shutil.ignore_patterns("__pycache__", "runs"))
    return destination


def test_no_data_and_no_network_is_one_line(tmp_path):
    copy = project_copy(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if k not in ("TINYTORCH_DATA", "no_proxy", "NO_PROXY")}
    env.update(PYTHONPATH=str(copy), TINYTORCH_CACHE=str(tmp_path / "cache"),
               https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")  # nothing listens on port 9
    result = subprocess.run([sys.executable, str(copy / "milestones" / MILESTONE.name), "--quick", "--no-progress"],
                            capture_output=True, text=True, cwd=copy, env=env, stdin=subprocess.DEVNULL, timeout=300)
    one_line_exit_2(result, "TINYTORCH_DATA", "internet")
    assert not list((tmp_path / "cache").rglob("*.tar.gz")), "a partial download was left behind"
    assert not (copy / "milestones" / "runs").exists()


def load_common():
    sys.path.insert(0, str(MILESTONE.parent))
    try:
        import _common
    finally:
        sys.path.remove(str(MILESTONE.parent))
    return _common


@pytest.mark.slow
def test_a_damaged_cache_is_rebuilt_from_the_mirror_with_a_note(cifar, tmp_path, monkeypatch, capsys):
    from tinytorch.data import CIFAR10, cache_dir, load_cifar10
    monkeypatch.setenv("TINYTORCH_CACHE", str(tmp_path / "cache"))
    load_cifar10(progress=False)  # a good cache first (decoded from the mirror)
    [decoded] = list((cache_dir() / "cifar10").glob(f"{CIFAR10.folder}*"))
    with open(decoded / "data_batch_3", "r+b") as damaged:
        damaged.truncate(1000)
    common = load_common()
    args = common.milestone_parser("", 1, 1, "").parse_args(["--no-progress"])
    (train_x, train_y), (test_x, test_y) = common.cifar10(args)
    assert train_x.shape == (50000, 3, 32, 32) and test_y.shape == (10000,)
    note = capsys.readouterr().err
    assert "note: the cached copy" in note and "damaged" in note and "rebuilding" in note, note
    assert (decoded / "data_batch_3").stat().st_size > 1000


@pytest.mark.slow
def test_ctrl_c_during_the_first_decode_is_one_line_and_caches_nothing(cifar, tmp_path):
    env = {**os.environ, "TINYTORCH_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, str(MILESTONE), "--quick", "--no-progress", "--run-dir", str(tmp_path / "run")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    for line in process.stdout:
        if "not in the cache" in line:
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=300)
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    one_line_exit_2(result, "interrupted")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    assert not (tmp_path / "run").exists()


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
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert not (tmp_path / "checkpoint.npz").exists() and not (tmp_path / "best.npz").exists(), "--quick keeps no checkpoints"
    assert "removed the --quick run's checkpoint.npz" in result.stdout


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
    assert (tmp_path / "checkpoint.npz").is_file()
    [hint] = [line for line in out.splitlines() if line.startswith("stopped; continue with: ")]
    command = hint.removeprefix("stopped; continue with: ") + " --keep-checkpoints"
    assert command.startswith(f"bash scripts/milestone.sh {MILESTONE.stem} --resume "), command
    outside_venv = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    outside_venv["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                           if Path(p).resolve() != Path(sys.executable).parent.resolve())
    resumed = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, env=outside_venv,
                             stdin=subprocess.DEVNULL, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout and "epoch   3/3" in resumed.stdout
    assert "this session" in resumed.stdout and "over all sessions" in resumed.stdout
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    again = run("--quick", "--no-progress", "--resume", str(tmp_path / "checkpoint.npz"), timeout=600)
    one_line_exit_2(again, "already finished its 3 epochs")
    other = run("--quick", "--no-progress", "--batch-size", "64", "--resume", str(tmp_path / "checkpoint.npz"), timeout=600)
    one_line_exit_2(other, "resume with the options of the run that wrote it")


# Module 12's data-parallel training imports mpi4py (the dev extra) inside the functions that need it.
NOT_FOR_MILESTONES = ("train/memory.py",)


def third_party_imports(*folders):
    """Top-level names of every module imported anywhere under `folders` that is not the standard library
    or the project's own (tinytorch, and the milestones' shared files such as _common)."""
    names, own = set(), {"tinytorch"}
    for folder in folders:
        for path in folder.rglob("*.py"):
            own.add(path.stem)
            if path.as_posix().endswith(NOT_FOR_MILESTONES):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in own}


def test_the_milestones_import_of_module_12_needs_no_dev_extra():
    """The milestones import module 12 for keep_freed_memory: that must work where mpi4py is not installed."""
    code = ("import sys; sys.modules['mpi4py'] = None\n"  # as if not installed: importing it raises ImportError
            "import tinytorch.train.memory as memory; memory.keep_freed_memory()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, f"module 12 needs the dev extra at import time: {result.stderr[-500:]}"


def test_the_main_command_installs_what_the_milestones_import_and_no_more():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = {re.split(r"[<>=\[ ]", d)[0].lower() for d in project["dependencies"] + project["optional-dependencies"]["milestone"]}
    distribution = {"PIL": "pillow"}
    needed = {distribution.get(n, n).lower() for n in third_party_imports(ROOT / "milestones", ROOT / "tinytorch")}
    assert needed <= installed, f"milestones need {sorted(needed - installed)} beyond the milestone extra"
    assert installed <= {"numpy", "tqdm", "matplotlib", "pillow"}, f"the main command installs more: {installed}"
    script = (ROOT / "scripts" / "milestone.sh").read_text()
    assert "TINYTORCH_EXTRAS=milestone" in script and "source" in script


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
