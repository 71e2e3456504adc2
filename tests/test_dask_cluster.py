"""Grading on a real Dask cluster: a `dask scheduler` and a `dask worker` started as separate processes in
folders of their own (their own working directory and $TMPDIR), as on another machine. Every input of
a job travels through Dask as bytes and every output comes back the same way. The worker runs with a
private /tmp (bubblewrap), so it cannot read the submitting side's course copy or scratch folders. Grading
runs without the kernel sandbox here (tests/test_sandbox_paths.py covers it) to avoid nesting bubblewrap."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tito import course, demo, gradebook
from tito.project import find_root, resolve

ROOT = find_root(__file__)
DASK = Path(sys.executable).parent / "dask"
pytestmark = pytest.mark.slow


def elsewhere(folder):
    """A prefix that runs a command as if on another machine: a private /tmp (the submitting side's
    scratch folders and course copy are not there), only its own folder, the project and Python bound
    back. Without bubblewrap, the command simply runs in its own folder."""
    if not shutil.which("bwrap"):
        return []
    keep = sorted({str(folder), str(ROOT), sys.prefix, sys.base_prefix})
    return ["bwrap", "--dev-bind", "/", "/", "--tmpfs", "/tmp", *[a for p in keep for a in ("--bind", p, p)], "--"]


def start(args, folder, log, isolated=False):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TMPDIR"] = str(folder / "tmp")
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    prefix = elsewhere(folder) if isolated else []
    return subprocess.Popen([*prefix, str(DASK), *args], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop(process):
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


@pytest.fixture
def cluster(tmp_path):
    """(scheduler address, the worker's folder) for a scheduler and one single-threaded worker."""
    address_file = tmp_path / "scheduler" / "scheduler.json"
    (tmp_path / "scheduler").mkdir()
    log = open(tmp_path / "cluster.log", "w")
    processes = [start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                        "--scheduler-file", str(address_file)], tmp_path / "scheduler", log)]
    try:
        deadline = time.monotonic() + 60
        while not address_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert address_file.is_file(), (tmp_path / "cluster.log").read_text()
        address = json.loads(address_file.read_text())["address"]
        processes.append(start(["worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
                               tmp_path / "worker", log, isolated=True))
        yield address, tmp_path / "worker"
    finally:
        for process in reversed(processes):
            stop(process)
        log.close()


def test_autograde_on_a_separate_scheduler_and_worker(cluster):
    address, worker_folder = cluster
    scratch = demo.scratch_course(ROOT)
    try:
        module = resolve(scratch, ["01"])[0]
        course.release(scratch, [module])
        demo.submit_class(scratch, [module], kinds=("honest", "blank"))
        result = subprocess.run([sys.executable, "-m", "tito", "autograde", "01", "--dask", address, "--timeout", "20",
                                 "--no-sandbox"], cwd=scratch, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        stored = {s.student: s.score for s in gradebook.scores(scratch)}
        assert stored == {"demo-blank": 0, "demo-honest": 100}, result.stdout
        autograded = scratch / "course" / "autograded" / "demo-honest" / module.slug / f"{module.slug}.ipynb"
        assert autograded.is_file(), "the autograded notebook came back through Dask"
        assert (scratch / "course" / "results" / module.slug / "demo-honest.log").read_text().strip()
        assert list((worker_folder / "tmp").iterdir()) == [] or all(
            not p.name.startswith("tito-") for p in (worker_folder / "tmp").iterdir()), "the worker left scratch behind"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
