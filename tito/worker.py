"""Grading one submission in a process of its own: `python -m tito.worker JOB.json`.

The worker reads the course (source notebook, reference package, a snapshot of the gradebook) and
writes only into the job's scratch folder: the repaired copy of the submission, its grading copy of
the package, a private gradebook that nbgrader autogrades into, and `result.json` (the kernel's
sockets go to a short-lived folder of /tmp when the scratch path is too long for a Unix socket). The
parent process is the only writer of the real gradebook, so a worker killed at any moment changes no
stored grade.
Student code runs only in the kernel, which is sandboxed (tito/sandbox.py) and supervised here by
SandboxedExecute: a time budget per cell and per submission, restarts after a dead or stuck kernel.
"""
import copy
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from traitlets import Dict, Integer, List
from traitlets.config import Config

from nbgrader.api import Gradebook
from nbgrader.apps import AutogradeApp
from nbgrader.converters import Autograde
from nbgrader.preprocessors import Execute

from tito import checks, kernels, sandbox, structure
from tito.errors import TitoError
from tito.grading import checks_timeout, grading_copy, result_for_nothing_run
from tito.notebooks import graded_cells, nbgrader, source
from tito.project import read_notebook, resolve

MESSAGE_CHARS = 300


def _error(name, text):
    return NotebookNode(output_type="error", ename=name, evalue=text, traceback=[f"{name}: {text}"])


def _label(cell, index):
    return nbgrader(cell).get("grade_id") or f"#{index} (ungraded)"


def _errored(cell):
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


class _Restart(Exception):
    """Raised out of a kernel session to end it: its kernel is shut down and, if time is left, a new one started."""


class _Stop(Exception):
    """Raised out of a kernel session to end grading: the cells not yet run are marked as such."""


@dataclass
class _Run:
    """What one `preprocess` call knows about its notebook (an instance per notebook; nothing is shared).

    Its steps are ("cell", index of a code cell) in notebook order, then ("check", grade_id) for each graded
    cell's hidden checks. The cells have `deadline`; the checks get `checks_seconds` of their own, counted from
    when the cells are done or out of time, so a notebook that uses up its time keeps the points it earned."""
    deadline: float
    checks_seconds: int
    per_cell: int
    steps: list
    cells: int  # steps[:cells] are the notebook's cells
    position: int = 0  # steps[position] is the next step to run
    checks_deadline: float = None
    clean: list = field(default_factory=list)  # cells that ran without error, re-run after a restart
    session: list = field(default_factory=list)  # (kind, cell index or grade_id, replayed?) per cell of this session
    output_bytes: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    checks: dict = field(default_factory=dict)  # grade_id -> verdict, or the reference's record
    graded: dict = field(default_factory=dict)  # grade_id -> its graded cell, to skip the checks of a failed one
    skipped: int = 0  # cells not run because the notebook's time was up
    broken: bool = False  # the kernel could not rebuild its state after a restart: nothing more can run

    def now_deadline(self):
        """The deadline of the phase running now; the checks' phase starts once the cells are done or out of time."""
        now = time.monotonic()
        if self.checks_deadline is None and (self.position >= self.cells or now >= self.deadline):
            self.checks_deadline = now + self.checks_seconds
        return self.deadline if self.checks_deadline is None else self.checks_deadline


def problems_of(nb):
    """The sentences SandboxedExecute left in a notebook's metadata (empty when nothing went wrong)."""
    return list(nb.get("metadata", {}).get("tito", {}).get("problems", []))


class SandboxedExecute(Execute):
    """nbgrader's Execute with a time budget per submission, restarts after a dead or stuck kernel, capped outputs,
    and hidden checks judged outside the kernel (tito/checks.py).

    Hidden-test blocks are removed from every cell before anything runs. After the last cell, each graded
    cell's hidden checks (`hidden_checks`) run in the same kernel, unless the cell's visible tests failed (it
    scores 0 anyway, and a hang is not waited for twice); what they report is compared with
    `expected` (the reference's reports), or, when `expected` is None, recorded as the reference.
    A cell that times out is interrupted; one that kills the kernel (os._exit, a kill, a crash) or ignores
    the interrupt has its kernel killed. Either way the kernel is then restarted (an interrupted cell can
    leave it unusable: a flood of output still buffered, threads, memory), the cells that had run cleanly
    are re-run silently to rebuild its state, and grading goes on with the next step. Cells left when
    the submission's time runs out are marked as not run, which nbgrader scores 0. What went wrong is
    written, as sentences, to the notebook's metadata (`problems_of`), the checks' verdicts beside them.

    Only documented extension points of the pinned nbconvert/nbclient are used (tests/test_worker_hooks.py):
    `preprocess` runs one kernel session per call of the inherited `preprocess`, `preprocess_cell` runs a
    cell through the public `execute_cell`, `output` drops what exceeds the cap.
    """
    total_timeout = Integer(300, help="Seconds for the whole notebook, restarts included.").tag(config=True)
    checks_timeout = Integer(150, help="Seconds for the hidden checks, after the notebook's own.").tag(config=True)
    max_output_bytes = Integer(1_000_000, help="Output kept per cell; the rest is dropped.").tag(config=True)
    hidden_checks = List(help="[grade_id, code] of each graded cell's hidden checks, run after every cell.").tag(config=True)
    expected = Dict(default_value=None, allow_none=True,
                    help="grade_id -> the reference's reports; None records this run's reports instead.").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.source = structure.visible_text(cell.source) if checks.BEGIN in cell.source else cell.source
        cells = [("cell", i) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        run = _Run(deadline=time.monotonic() + self.total_timeout, checks_seconds=self.checks_timeout,
                   per_cell=self.timeout, steps=cells + [("check", grade_id) for grade_id, _ in self.hidden_checks],
                   cells=len(cells))
        run.graded = {nbgrader(c)["grade_id"]: c for c in nb.cells if nbgrader(c).get("grade")}
        self.grading_run, self.nb_being_graded = run, nb
        code = dict(self.hidden_checks)
        while run.position < len(run.steps) and not run.broken and time.monotonic() < run.now_deadline():
            if run.position < run.cells and time.monotonic() >= run.deadline:
                self._skip_cells(nb)  # no kernel needed to mark them
                continue
            replayed = [copy.deepcopy(nb.cells[i]) for i in run.clean]
            remaining = run.steps[run.position:]
            run.session = [("cell", i, True) for i in run.clean] + [(kind, ref, False) for kind, ref in remaining]
            run.output_bytes = {}
            session = NotebookNode({**nb, "metadata": NotebookNode(copy.deepcopy(dict(nb.metadata))),
                                    "cells": replayed + [nb.cells[ref] if kind == "cell" else
                                                         nbformat.v4.new_code_cell(checks.kernel_code(code[ref]))
                                                         for kind, ref in remaining]})
            try:
                super().preprocess(session, resources, km)
            except _Restart:
                continue
            except _Stop:
                break
            finally:
                nb.metadata.update(session.metadata)
        self._account(nb)
        nb.metadata["tito"] = {"problems": run.problems, "checks": run.checks}
        return nb, resources

    def _skip_cells(self, nb):
        """Mark the cells not yet run as not run: the notebook's time is up."""
        run = self.grading_run
        for _, index in run.steps[run.position:run.cells]:
            nb.cells[index].outputs = [_error("NotRun", f"not run: the submission used up its {self.total_timeout} s")]
            run.skipped += 1
        run.position = max(run.position, run.cells)

    def _account(self, nb):
        """Mark what did not run, and say why."""
        run = self.grading_run
        why = ("not run: the kernel failed again while re-running the cells before" if run.broken
               else f"not run: the submission used up its {self.total_timeout} s")
        left = [ref for kind, ref in run.steps[run.position:] if kind == "cell"]
        for index in left:
            nb.cells[index].outputs = [_error("NotRun", why)]
        if run.skipped or left:
            run.problems.append(f"{run.skipped + len(left)} cell(s) {why}")
        checks_left = len(run.steps) - max(run.position, run.cells)
        if checks_left:
            why = why if run.broken else f"not run: they used up their {self.checks_timeout} s"
            run.problems.append(f"the hidden checks of {checks_left} test(s) were {why}")

    def preprocess_cell(self, cell, resources, index):
        """Run one step within its share of the time; a dead, stuck or interrupted kernel ends the session."""
        run = self.grading_run
        kind, ref, replay = run.session[index]
        if kind == "cell" and not replay and time.monotonic() >= run.deadline:
            self._skip_cells(self.nb_being_graded)  # the notebook's time is up; the hidden checks still run
            raise _Restart  # a new session holds only the checks
        deadline = run.now_deadline()
        left = math.ceil(deadline - time.monotonic())
        if left <= 0:
            raise _Stop
        self.timeout = max(1, min(run.per_cell, left))
        budget = (f"the hidden checks used up their {self.checks_timeout} s" if deadline == run.checks_deadline
                  else f"the submission used up its {self.total_timeout} s")
        reason = (f"the cell did not finish within {run.per_cell} s and was interrupted" if run.per_cell <= left
                  else f"{budget} during this cell")
        self.error_on_timeout = {"ename": "CellTimeoutError", "evalue": reason, "traceback": [reason]}
        if replay:
            self._replay(cell, index)
            return cell, resources
        run.position += 1
        if kind == "check" and _errored(run.graded.get(ref, {})):
            self._judge(ref, [], failed=True)  # its visible tests failed: the cell scores 0 whatever its checks say
            return cell, resources
        label = _label(cell, ref) if kind == "cell" else f"{ref} (its hidden checks)"
        try:
            self.execute_cell(cell, index, store_history=kind == "cell")
        except DeadKernelError:
            self._blame(kind, ref, cell, label, "KernelDied", "the kernel died running this cell (os._exit, a kill, "
                        "a crash or the memory cap); it was restarted")
            raise _Restart from None
        except CellTimeoutError:
            self._blame(kind, ref, cell, label, "CellTimeoutError", "the cell ran past its time limit and ignored the "
                        "interrupt; the kernel was killed and restarted")
            raise _Restart from None
        if any(o.get("ename") == "CellTimeoutError" for o in cell.outputs):
            run.problems.append(f"cell {label}: {reason}")
            if kind == "check":
                self._judge(ref, [], failed=True)
            raise _Restart  # an interrupted kernel may be unusable: start afresh
        if kind == "check":
            self._judge(ref, cell.outputs, failed=_errored(cell))
        elif not _errored(cell):
            run.clean.append(ref)
        return cell, resources

    def _judge(self, grade_id, outputs, failed):
        """Keep the verdict of one cell's hidden checks, or, for the reference, what they reported."""
        if self.expected is None:
            errors = [o for o in outputs if o.get("output_type") == "error"]
            self.grading_run.checks[grade_id] = (
                {"error": f"{errors[-1].get('ename')}: {errors[-1].get('evalue')}" if errors else "did not finish"}
                if failed else {"record": checks.reference_record(outputs)})
        else:
            passed, message = checks.verdict(self.expected.get(grade_id, []), outputs, failed)
            self.grading_run.checks[grade_id] = {"passed": passed, "message": message}

    def _replay(self, cell, index):
        """Re-run a cell that ran cleanly before the restart; if it cannot run now, grading stops."""
        try:
            self.execute_cell(cell, index, store_history=True)
            failed = any(o.get("ename") == "CellTimeoutError" for o in cell.outputs)
        except (DeadKernelError, CellTimeoutError):
            failed = True
        if failed:
            if time.monotonic() < self.grading_run.now_deadline():
                self.grading_run.broken = True
                self.grading_run.problems.append("grading stopped: the kernel failed again while re-running the cells before")
            raise _Stop

    def _blame(self, kind, ref, cell, label, name, text):
        cell.outputs.append(_error(name, text))
        self.grading_run.problems.append(f"cell {label}: {text}")
        if kind == "check":
            self._judge(ref, [], failed=True)

    def output(self, outs, msg, display_id, cell_index):
        size = self.grading_run.output_bytes.get(cell_index, 0) + len(json.dumps(msg["content"]))
        self.grading_run.output_bytes[cell_index] = size
        if size > self.max_output_bytes and msg["msg_type"] != "error":
            return None
        return super().output(outs, msg, display_id, cell_index)


def _message(cell):
    """A graded cell's verdict on its visible tests in one short line: its last error; empty when it passed.
    No hidden line was in the kernel when this error was raised (hidden checks run after every cell)."""
    if cell is None:
        return "cell missing from the graded notebook"
    outputs = cell.get("outputs", [])
    errors = [o for o in outputs if o.get("output_type") == "error"]
    stderr = [o for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    if errors:
        text = f"{errors[-1].get('ename', 'Error')}: {errors[-1].get('evalue', '')}".strip().rstrip(":")
    elif stderr:  # nbgrader scores a test that writes to stderr 0
        text = "wrote to stderr: " + "".join(stderr[0].get("text", "")).strip()
    else:
        return ""
    return " ".join(text.splitlines()[:3])[:MESSAGE_CHARS]


def _links_and(*patterns):
    """A copytree filter dropping symbolic links (a link could point at the answer key) and `patterns`."""
    by_pattern = shutil.ignore_patterns(*patterns)
    return lambda folder, names: set(by_pattern(folder, names)) | {n for n in names if Path(folder, n).is_symlink()}


def _prepare(job, module, repaired, scratch):
    """The scratch layout nbgrader and the kernel see."""
    submitted = scratch / "submitted" / job["student"] / module.slug
    ignore = shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__")
    shutil.copytree(job["submission"], submitted, ignore=_links_and(".ipynb_checkpoints", "__pycache__"))
    nbformat.write(repaired, submitted / f"{module.slug}.ipynb")
    shutil.copytree(submitted, scratch / "work", ignore=ignore)  # files for the kernel's working folder:
    shutil.copytree(module.folder, scratch / "work", ignore=ignore, dirs_exist_ok=True)  # no notebooks
    shutil.copy2(job["gradebook"], scratch / "gradebook.db")


def _kernelspec(job, scratch, gradelib, sockets):
    """The kernel nbgrader starts: sandboxed (unless --no-sandbox), found through JUPYTER_PATH."""
    os.environ["JUPYTER_PATH"] = str(scratch / "jupyter")
    env = {"PYTHONPATH": str(gradelib), "NBGRADER_EXECUTION": "autograde"}
    jail = {"files": scratch / "work", "readable": [gradelib], "writable": [sockets]}
    return sandbox.write_kernelspec(scratch / "jupyter", env, job["memory_mb"] * 2**20, jail if job["sandbox"] else None)


class _ErrorLines(logging.Handler):
    """Collects nbgrader's ERROR log lines, to report why a submission could not be graded."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.lines = []

    def emit(self, record):
        lines = record.getMessage().strip().splitlines() or [""]
        self.lines.append(lines[-1].strip() if lines[0].startswith("Traceback") else lines[0])


def _run_nbgrader(job, module, scratch, kernel_name, sockets):
    """nbgrader autograde of this one submission, into the private gradebook; returns its [ERROR] lines.

    nbgrader loads the course's nbgrader_config.py after the command line, so every setting the grader relies
    on (preprocessors, kernel, limits, folders) is applied again after that: the file cannot weaken them.
    """
    config = Config()
    config.Autograde.autograde_preprocessors = [SandboxedExecute if p is Execute else p
                                                for p in Autograde.autograde_preprocessors.default()]
    config.Execute.kernel_name = kernel_name
    config.Execute.timeout = job["cell_timeout"]
    config.Execute.interrupt_on_timeout = True
    config.SandboxedExecute.total_timeout = job["total_timeout"]
    config.SandboxedExecute.checks_timeout = checks_timeout(job["total_timeout"])
    config.SandboxedExecute.shutdown_kernel = "immediate"
    config.SandboxedExecute.hidden_checks = [list(block) for block in checks.hidden_blocks(read_notebook(module.notebook))]
    config.SandboxedExecute.expected = job["expected"]
    config.CourseDirectory.submitted_directory = str(scratch / "submitted")
    config.CourseDirectory.autograded_directory = str(scratch / "autograded")
    config.CourseDirectory.db_url = f"sqlite:///{scratch / 'gradebook.db'}"
    config.CourseDirectory.course_id = job["course_id"]
    kernels.ipc_config(sockets, config)  # Unix sockets: the sandbox has no network
    errors = _ErrorLines()
    app = AutogradeApp(config=config)
    app.initialize([module.slug, f"--student={job['student']}", "--force"])
    app.update_config(config)
    app.log.addHandler(errors)
    try:
        app.start()
    except SystemExit:  # nbgrader exits 1 after logging what failed
        pass
    return errors.lines


def _collect(job, module, source_nb, scratch, problems):
    """The graded result, read from the private gradebook and the autograded notebook.

    A graded cell with hidden checks scores its points only if its visible tests passed in the kernel and
    the grader found every value its hidden checks reported equal to the reference's. A failed hidden check
    is reported with the instructor's message only."""
    autograded = scratch / "autograded" / job["student"] / module.slug
    notebook_path = autograded / f"{module.slug}.ipynb"
    notebook = nbformat.read(notebook_path, as_version=4) if notebook_path.is_file() else {"cells": []}
    by_id = {nbgrader(c).get("grade_id"): c for c in notebook["cells"] if nbgrader(c).get("grade")}
    problems = problems + problems_of(notebook)
    verdicts = notebook.get("metadata", {}).get("tito", {}).get("checks", {})
    hidden = {grade_id for grade_id, _ in checks.hidden_blocks(source_nb)}
    with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}", job["course_id"]) as gradebook:
        submission = gradebook.find_submission(module.slug, job["student"])
        graded = submission.notebooks[0]
        scores = {g.name: g.auto_score for g in graded.grades}
        comments = {c.name: c.auto_comment for c in graded.comments}
        timestamp = submission.timestamp.isoformat() if submission.timestamp else None
        late_penalty = graded.late_submission_penalty
    cells = []
    for grade_id, points in graded_cells(source_nb):
        score, message = float(scores.get(grade_id) or 0.0), _message(by_id.get(grade_id))
        verdict = verdicts.get(grade_id, {"passed": False, "message": "hidden checks not run"})
        if grade_id in hidden and score > 0 and not verdict["passed"]:
            score, message = 0.0, verdict["message"]
        cells.append({"grade_id": grade_id, "score": score, "max_score": float(points), "message": message})
    return {"student": job["student"], "module": module.slug, "status": "graded", "problems": problems,
            "cells": cells, "comments": comments, "timestamp": timestamp, "late_penalty": late_penalty,
            "autograded": str(autograded)}


def reference_checks(root, module, timeout=600):
    """{grade_id: what its hidden checks report on the reference solution}, from `course/checks/` when the
    sources have not changed since, else by running the source notebook and its checks in a plain kernel
    (with the grading kernel's environment). A check that fails on the reference is the instructor's to fix:
    a TitoError naming it."""
    found = checks.cached(root, module)
    if found is not None:
        return found
    notebook = nbformat.read(module.notebook, as_version=4)
    blocks = checks.hidden_blocks(notebook)
    if not blocks:
        return {}
    with tempfile.TemporaryDirectory(prefix="tito-reference-") as scratch:
        scratch = Path(scratch)
        sockets = kernels.socket_folder(scratch / "run")
        kernel = sandbox.write_kernelspec(scratch / "jupyter", {"PYTHONPATH": str(root), "NBGRADER_EXECUTION": "autograde"},
                                          8 * 2**30)
        config = kernels.ipc_config(sockets)
        config.SandboxedExecute.update(kernel_name=kernel, timeout=timeout, total_timeout=4 * timeout,
                                       hidden_checks=[list(block) for block in blocks], expected=None)
        saved = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = str(scratch / "jupyter")
        try:
            SandboxedExecute(config=config).preprocess(notebook, {"metadata": {"path": str(module.folder)}})
        finally:
            os.environ.pop("JUPYTER_PATH") if saved is None else os.environ.update(JUPYTER_PATH=saved)
    results = notebook.metadata["tito"]["checks"]
    failed = [f"{grade_id} ({result['error']})" for grade_id, result in results.items() if "error" in result]
    failed += [f"{grade_id} (not run)" for grade_id, _ in blocks if grade_id not in results]
    if failed:
        raise TitoError(f"{module.slug}: hidden checks fail on the reference solution: {'; '.join(failed)}")
    records = {grade_id: result["record"] for grade_id, result in results.items()}
    checks.require_all(blocks, records, module)
    checks.store(root, module, records)
    return records


def grade(job):
    """Grade the submission described by `job`; returns the result (also the content of result.json)."""
    root, scratch = Path(job["root"]), Path(job["scratch"])
    module = resolve(root, [job["module"]])[0]
    source_nb = read_notebook(module.notebook)
    notebook_path = Path(job["submission"]) / f"{module.slug}.ipynb"
    label = f"{job['student']}/{module.slug}.ipynb"
    try:
        if notebook_path.is_symlink():
            raise TitoError(f"{label}: a symbolic link, not a notebook")
        if not notebook_path.is_file():
            found = sorted(p.name for p in Path(job["submission"]).glob("*.ipynb")) or ["no notebook"]
            raise TitoError(f"{label}: missing (the submission holds {', '.join(found)})")
        repaired, problems = structure.check(read_notebook(notebook_path), source_nb, label)
    except TitoError as refusal:
        reason = f"refused: {str(refusal).replace(str(notebook_path), label)}"
        return result_for_nothing_run(job["student"], module.slug, source_nb, reason)
    gradelib = scratch / "gradelib"
    try:
        grading_copy(root, module, repaired, gradelib)
    except TitoError as failure:  # e.g. a syntax error: graded, but nothing can import the module
        detail = str(failure).split(": ", 1)[-1]
        problems.append(f"nbdev could not export the notebook ({detail}); graded without its exported module")
    _prepare(job, module, repaired, scratch)
    sockets = kernels.socket_folder(scratch / "run")
    try:
        errors = _run_nbgrader(job, module, scratch, _kernelspec(job, scratch, gradelib, sockets), sockets)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    if errors and not (scratch / "autograded" / job["student"] / module.slug / f"{module.slug}.ipynb").is_file():
        return {"student": job["student"], "module": module.slug, "status": "error", "problems": errors[-3:]}
    return _collect(job, module, source_nb, scratch, problems)


def main(job_path):
    job = json.loads(Path(job_path).read_text())
    started = time.monotonic()
    result = grade(job)
    result["seconds"] = round(time.monotonic() - started, 2)
    Path(job["scratch"], "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
