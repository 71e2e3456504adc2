"""Autograding module NN fairly, safely, in parallel, without ever losing a stored grade.

Each submission is graded by its own worker process (`python -m tito.worker`, see tito/worker.py)
against its own grading copy of the package: the reference modules before NN plus module NN exported
from the student's notebook, nothing after. The worker autogrades into a private copy of the
gradebook; this process, the only writer, stores each result in the real gradebook as it arrives
(one transaction per submission). Workers run side by side on threads of this process, or on a Dask
cluster (any `concurrent.futures` executor): a job's inputs go to it as bytes and its outputs come back
as bytes, so a worker needs no file system shared with this machine.
"""
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tito import gradebook, nbdev_ops, sandbox
from tito.errors import TitoError
from tito.notebooks import graded_cells, nbgrader, source
from tito.project import export_targets, module_of_file, read_notebook

DIRECTIVE = re.compile(r"^(\s*#\s*\|\s*)(\w+)(.*)$", re.M)  # nbdev's directive syntax (nbdev/process.py)
STARTUP_GRACE = 60  # seconds a worker may spend outside the notebook (imports, export, nbgrader) before it is killed
_running = set()  # worker processes of this process, killed on Ctrl-C
_running_lock = threading.Lock()


@dataclass(frozen=True)
class Limits:
    """What one submission may use: seconds per cell, seconds in all, memory of its kernel."""
    cell_timeout: int = 60
    total_timeout: int = 300
    memory_mb: int = 2048


def checks_timeout(total_timeout):
    """Seconds the hidden checks may take after the notebook's `total_timeout` (restarts and re-runs included)."""
    return total_timeout // 2


@dataclass
class Outcome:
    """What grading one submission produced; `status` is graded, refused or killed (both scored 0), or
    error (a fault of the grader: nothing stored, the previous grade stays)."""
    student: str
    module: str
    status: str = "graded"
    score: float = 0.0
    max_score: float = 0.0
    problems: list = field(default_factory=list)


def submissions(root, module, students=None):
    """{student: submission folder} for a module, from nbgrader's `course/submitted/<student>/<module>/` layout."""
    submitted = root / "course" / "submitted"
    if students:
        found = {s: submitted / s / module.slug for s in students}
        for student, folder in found.items():
            if not folder.is_dir():
                raise TitoError(f"no submission folder {folder.relative_to(root)} for student '{student}'")
        return found
    found = {p.parent.name: p for p in sorted(submitted.glob(f"*/{module.slug}")) if p.is_dir()}
    if not found:
        raise TitoError(f"no submissions for {module.slug}: expected course/submitted/<student>/{module.slug}/{module.slug}.ipynb")
    return found


def _student_cell(text):
    """A student cell as nbdev may export it: directive arguments dropped, so `#| export /abs/path` cannot
    write outside the scratch package (nbdev joins the argument onto its destination)."""
    return DIRECTIVE.sub(lambda m: "" if m.group(2) == "default_exp" else f"{m.group(1)}{m.group(2)}", text)


def _for_export(submitted, reference):
    """The submission as nbdev should export it: locked cells (imports, default_exp) and notebook metadata
    (which sets nbdev's comment syntax) from the source, directive arguments removed from student cells."""
    locked = {nbgrader(c)["grade_id"]: source(c) for c in reference["cells"] if nbgrader(c).get("locked")}
    cells = []
    for cell in submitted["cells"]:
        grade_id = nbgrader(cell).get("grade_id")
        text = locked[grade_id] if grade_id in locked else _student_cell(source(cell))
        cells.append({**cell, "source": text})
    return {**submitted, "metadata": reference["metadata"], "cells": cells}


def _trimmed_reference(root, module, destination):
    """The reference package without module NN or any later module (and without nbdev's symbol index)."""
    shutil.copytree(root / "tinytorch", destination, ignore=shutil.ignore_patterns("__pycache__", "_modidx.py"))
    for path in destination.rglob("*.py"):
        owner = module_of_file(path)
        if owner and int(owner[:2]) >= module.number:
            path.unlink()


def grading_copy(root, module, submitted, destination):
    """Assemble the package a submission (notebook JSON) is graded against; returns the folder for PYTHONPATH.

    When nbdev cannot export the submission, the TitoError leaves `destination` holding the trimmed
    reference alone, so the submission can still be graded (without its own module).
    """
    reference = read_notebook(module.notebook)
    targets = export_targets(reference)
    if destination.exists():
        shutil.rmtree(destination)
    _trimmed_reference(root, module, destination / "tinytorch")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        shutil.copy2(root / "settings.ini", scratch / "settings.ini")
        (scratch / "tinytorch").mkdir()
        (scratch / "tinytorch" / "__init__.py").write_text("")
        target_nb = scratch / "modules" / module.slug / f"{module.slug}.ipynb"
        target_nb.parent.mkdir(parents=True)
        target_nb.write_text(json.dumps(_for_export(submitted, reference)))
        nbdev_ops.export(scratch, target_nb.relative_to(scratch))
        for target in targets:
            relative = Path(*target.split(".")).with_suffix(".py")
            exported = scratch / "tinytorch" / relative
            if exported.is_file():
                (destination / "tinytorch" / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(exported, destination / "tinytorch" / relative)
    return destination.resolve()


def result_for_nothing_run(student, module, source_nb, reason, status="refused"):
    """A result scoring 0 on every graded cell because nothing (that counts) ran, with the reason."""
    cells = [{"grade_id": g, "score": 0.0, "max_score": float(p), "message": reason} for g, p in graded_cells(source_nb)]
    return {"student": student, "module": module, "status": status, "problems": [reason], "cells": cells,
            "comments": {}, "timestamp": None, "late_penalty": None, "autograded": None}


def pack(entries):
    """A gzipped tar (bytes) of {name inside: host path}; symbolic links stay links, caches are left out."""
    buffer = io.BytesIO()
    skip = lambda info: None if "__pycache__" in info.name or ".ipynb_checkpoints" in info.name else info
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, path in entries.items():
            tar.add(path, arcname=name, filter=skip)
    return buffer.getvalue()


def unpack(data, destination):
    """Extract `pack`'s bytes into `destination` (nothing may land outside it)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(destination, filter="tar")  # "data" would refuse the links the worker must see to refuse


def course_inputs(root, module, snapshot):
    """What every job of `module` reads, as bytes: configuration, the module's folder, the reference
    package, the grader's own code, and the gradebook snapshot."""
    entries = {name: root / name for name in ("settings.ini", "nbgrader_config.py", "tito", "tinytorch")}
    return pack({**entries, f"modules/{module.slug}": module.folder, "gradebook.db": snapshot})


def run_job(job, course, submission):
    """Grade one submission wherever this runs (a thread here, or a Dask worker on another machine).

    Everything the job reads arrives as bytes (`course`, `submission`: see `course_inputs`, `pack`) and
    is unpacked into a private temporary folder; what it produces comes back in the returned dict:
    the result, nbgrader's autograded folder (bytes) and the worker's log. Top-level, so Dask can send it.
    """
    with tempfile.TemporaryDirectory(prefix="tito-job-") as here:
        here = Path(here)
        unpack(course, here / "course")
        unpack(submission, here / "course")
        (here / "scratch").mkdir()
        local = {**job, "root": str(here / "course"), "submission": str(here / "course" / "submission"),
                 "gradebook": str(here / "course" / "gradebook.db"), "scratch": str(here / "scratch")}
        result = _run_worker(local)
        autograded = result.get("autograded")
        return {"result": {**result, "autograded": None},
                "autograded": pack({".": autograded}) if autograded and Path(autograded).is_dir() else None,
                "log": (here / "scratch" / "log").read_text(errors="replace")}


def _run_worker(job):
    """Run one worker process for `job` (local paths) and return its result; a worker past its time is
    killed with its kernel and scores 0."""
    scratch = Path(job["scratch"])
    job_file = scratch / "job.json"
    job_file.write_text(json.dumps(job))
    limit = job["total_timeout"] + checks_timeout(job["total_timeout"]) + STARTUP_GRACE
    with open(scratch / "log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "tito.worker", str(job_file)], cwd=job["root"],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        with _running_lock:
            _running.add(process)
        timed_out = False
        try:
            process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(process)
        finally:
            with _running_lock:
                _running.discard(process)
    result_file = scratch / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    if timed_out:
        source_nb = read_notebook(Path(job["root"], "modules", job["module"], f"{job['module']}.ipynb"))
        return result_for_nothing_run(job["student"], job["module"], source_nb,
                                      f"killed: grading did not finish within {limit} s", status="killed")
    tail = (scratch / "log").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return {"student": job["student"], "module": job["module"], "status": "error",
            "problems": [f"worker exited with status {process.returncode}: {tail[0]}"]}


def _kill(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the worker's session: nbgrader, nbdev and the kernel
    except ProcessLookupError:
        pass
    process.wait()


def _snapshot(root, module, destination):
    """A consistent copy of the gradebook for the workers; checks the module was released."""
    database = root / "course" / "gradebook.db"
    if not database.is_file():
        raise TitoError(f"no gradebook yet: run `tito release {module.slug}` first")
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as live, sqlite3.connect(destination) as copy:
        live.backup(copy)
        row = copy.execute("SELECT course_id FROM assignment WHERE name = ?", (module.slug,)).fetchone()
    if row is None:
        raise TitoError(f"{module.slug} is not in the gradebook: run `tito release {module.slug}` first")
    return row[0]


def _store(root, module, course_id, returned):
    """Keep a finished job: gradebook first (the grade), then nbgrader's autograded folder, then the record."""
    result = returned["result"]
    outcome = Outcome(result["student"], module.slug, result["status"], problems=list(result.get("problems", [])))
    if result["status"] == "error":
        return outcome
    gradebook.store(root, course_id, result)
    if returned.get("autograded"):
        target = root / "course" / "autograded" / result["student"] / module.slug
        if target.exists():
            shutil.rmtree(target)
        unpack(returned["autograded"], target)
        result["autograded"] = str(target.relative_to(root))
    folder = root / "course" / "results" / module.slug
    gradebook.write_atomically(folder / f"{result['student']}.json", json.dumps(result, indent=1))
    gradebook.write_atomically(folder / f"{result['student']}.log", returned["log"])
    outcome.score = sum(c["score"] for c in result["cells"])
    outcome.max_score = sum(c["max_score"] for c in result["cells"])
    return outcome


def autograde(root, module, students=None, limits=Limits(), workers=None, sandboxed=True, executor=None,
              on_outcome=None):
    """Grade each submission of `module` in its own worker; returns one Outcome per student.

    `workers` processes run at once (default: the number of cores) unless `executor` (e.g. a Dask
    client's `get_executor()`) is given. Results are stored as they arrive, so an interrupted batch
    keeps every grade stored so far and every earlier grade of the submissions it did not finish.
    """
    from tito.worker import reference_checks  # the worker imports this module

    if sandboxed:
        sandbox.require()
    found = submissions(root, module, students)
    expected = reference_checks(root, module)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="tito-grade-") as scratch:
        course_id = _snapshot(root, module, Path(scratch) / "gradebook.db")
        course = course_inputs(root, module, Path(scratch) / "gradebook.db")
    pool = executor or ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)
    futures = {}
    for student, folder in found.items():
        job = {"module": module.slug, "student": student, "course_id": course_id, "sandbox": sandboxed,
               "cell_timeout": limits.cell_timeout, "total_timeout": limits.total_timeout, "memory_mb": limits.memory_mb,
               "expected": expected}
        futures[pool.submit(run_job, job, course, pack({"submission": folder}))] = job
    try:
        for future in as_completed(futures):
            outcome = _store(root, module, course_id, future.result())
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
    except BaseException:
        for future in futures:
            future.cancel()
        with _running_lock:
            for process in list(_running):
                _kill(process)
        raise
    finally:
        if executor is None:
            pool.shutdown(wait=True, cancel_futures=True)
    return sorted(outcomes, key=lambda o: o.student)
