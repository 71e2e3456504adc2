"""Grading one submission in a process of its own: `python -m tito.worker JOB.json`.

The worker reads the course (source notebook, reference package, a snapshot of the gradebook) and
writes only into the job's scratch folder: the repaired copy of the submission, its grading copy of
the package, a private gradebook that nbgrader autogrades into, and `result.json`. The parent process
is the only writer of the real gradebook, so a worker killed at any moment changes no stored grade.
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
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from traitlets import Integer
from traitlets.config import Config

from nbgrader.api import Gradebook
from nbgrader.apps import AutogradeApp
from nbgrader.converters import Autograde
from nbgrader.preprocessors import Execute

from tito import sandbox, structure
from tito.errors import TitoError
from tito.grading import grading_copy, result_for_nothing_run
from tito.notebooks import graded_cells, nbgrader, source
from tito.project import read_notebook, resolve

MESSAGE_CHARS = 300
HIDDEN_LINE_CHARS = 12  # hidden-test lines at least this long are redacted from feedback messages


def _error(name, text):
    return NotebookNode(output_type="error", ename=name, evalue=text, traceback=[f"{name}: {text}"])


def _label(cell, index):
    return nbgrader(cell).get("grade_id") or f"#{index} (ungraded)"


def _errored(cell):
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


class SandboxedExecute(Execute):
    """nbgrader's Execute with a time budget per submission, restarts after a dead or stuck kernel, capped outputs.

    A cell that times out is interrupted; one that kills the kernel (os._exit, a kill, a crash) or ignores
    the interrupt has its kernel killed. Either way the kernel is then restarted (an interrupted cell can
    leave it unusable: a flood of output still buffered, threads, memory), the cells that had run cleanly
    are re-run silently to rebuild its state, and grading goes on with the next cell. Cells left when
    the submission's time runs out are marked as not run, which nbgrader scores 0.
    """
    total_timeout = Integer(300, help="Seconds for the whole notebook, restarts included.").tag(config=True)
    max_output_bytes = Integer(1_000_000, help="Output kept per cell; the rest is dropped.").tag(config=True)
    problems = []  # what went wrong, as sentences (one submission per process)

    def preprocess(self, nb, resources=None, km=None):
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self.shutdown_kernel = "immediate"
        self._output_bytes = {}
        per_cell, deadline = self.timeout, time.monotonic() + self.total_timeout
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        clean, position, why_not = [], 0, f"not run: the submission used up its {self.total_timeout} s"
        while position < len(code) and time.monotonic() < deadline:
            with self.setup_kernel():
                info = self.wait_for_reply(self.kc.kernel_info())
                self.nb.metadata["language_info"] = info["content"]["language_info"]
                try:  # rebuild the state the previous kernel had
                    replayed = all(self._execute(copy.deepcopy(nb.cells[i]), i, per_cell, deadline) for i in clean)
                except (DeadKernelError, CellTimeoutError):
                    replayed = False
                if not replayed:
                    if time.monotonic() < deadline:
                        why_not = "not run: the kernel failed again while re-running the cells before"
                        self.problems.append(why_not.replace("not run: ", "grading stopped: "))
                    break
                while position < len(code) and time.monotonic() < deadline:
                    index = code[position]
                    position += 1
                    try:
                        if not self._execute(nb.cells[index], index, per_cell, deadline):
                            break  # interrupted after its time limit: restart
                    except DeadKernelError:
                        self._blame(nb.cells[index], index, "KernelDied", "the kernel died running this cell "
                                    "(os._exit, a kill, a crash or the memory cap); it was restarted")
                        break
                    except CellTimeoutError:
                        self._blame(nb.cells[index], index, "CellTimeoutError", "the cell ran past its time "
                                    "limit and ignored the interrupt; the kernel was killed and restarted")
                        break
                    if not _errored(nb.cells[index]):
                        clean.append(index)
        for index in code[position:]:
            nb.cells[index].outputs = [_error("NotRun", why_not)]
        if position < len(code):
            self.problems.append(f"{len(code) - position} cell(s) {why_not}")
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _execute(self, cell, index, per_cell, deadline):
        """Run one cell within its share of the time; False if it had to be interrupted."""
        left = math.ceil(deadline - time.monotonic())
        self.timeout = max(1, min(per_cell, left))
        reason = (f"the cell did not finish within {per_cell} s and was interrupted" if per_cell <= left
                  else f"the submission used up its {self.total_timeout} s during this cell")
        self.error_on_timeout = {"ename": "CellTimeoutError", "evalue": reason, "traceback": [reason]}
        self.preprocess_cell(cell, self.resources, index)
        if any(o.get("ename") == "CellTimeoutError" for o in cell.outputs):
            self.problems.append(f"cell {_label(cell, index)}: {reason}")
            return False
        return True

    def _blame(self, cell, index, name, text):
        cell.outputs.append(_error(name, text))
        self.problems.append(f"cell {_label(cell, index)}: {text}")

    def output(self, outs, msg, display_id, cell_index):
        size = self._output_bytes.get(cell_index, 0) + len(json.dumps(msg["content"]))
        self._output_bytes[cell_index] = size
        if size > self.max_output_bytes and msg["msg_type"] != "error":
            return None
        return super().output(outs, msg, display_id, cell_index)


def _redactor(source_nb):
    """A function removing hidden-test lines (as the source has them) from a message."""
    hidden = set()
    for cell in source_nb["cells"]:
        text = source(cell)
        for block in structure.HIDDEN_BLOCK.findall(text):
            hidden |= {line.strip() for line in block.splitlines()[1:-1] if len(line.strip()) >= HIDDEN_LINE_CHARS}

    def redact(message):
        for line in hidden:
            message = message.replace(line, "[hidden test]")
        return message[:MESSAGE_CHARS]
    return redact


def _message(cell, redact):
    """A graded cell's verdict in one short line: its last error, redacted; empty when it passed."""
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
    return redact(" ".join(text.splitlines()[:3]))


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
    (scratch / "run").mkdir()


def _kernelspec(job, scratch, gradelib):
    """The kernel nbgrader starts: sandboxed (unless --no-sandbox), found through JUPYTER_PATH."""
    os.environ["JUPYTER_PATH"] = str(scratch / "jupyter")
    env = {"PYTHONPATH": str(gradelib), "NBGRADER_EXECUTION": "autograde"}
    jail = {"files": scratch / "work", "readable": [gradelib], "writable": [scratch / "run"]}
    return sandbox.write_kernelspec(scratch / "jupyter", env, job["memory_mb"] * 2**20, jail if job["sandbox"] else None)


class _ErrorLines(logging.Handler):
    """Collects nbgrader's ERROR log lines, to report why a submission could not be graded."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage().strip().splitlines()[0])


def _run_nbgrader(job, module, scratch, kernel_name):
    """nbgrader autograde of this one submission, into the private gradebook; returns its [ERROR] lines."""
    config = Config()
    config.Autograde.autograde_preprocessors = [SandboxedExecute if p is Execute else p
                                                for p in Autograde.autograde_preprocessors.default()]
    config.Execute.kernel_name = kernel_name
    config.SandboxedExecute.total_timeout = job["total_timeout"]
    config.KernelManager.transport = "ipc"  # Unix sockets: the sandbox has no network
    config.KernelManager.connection_file = str(scratch / "run" / "k.json")
    argv = [module.slug, f"--student={job['student']}", "--force", f"--Execute.timeout={job['cell_timeout']}",
            f"--CourseDirectory.submitted_directory={scratch / 'submitted'}",
            f"--CourseDirectory.autograded_directory={scratch / 'autograded'}",
            f"--CourseDirectory.db_url=sqlite:///{scratch / 'gradebook.db'}"]
    errors = _ErrorLines()
    app = AutogradeApp(config=config)
    app.initialize(argv)
    app.log.addHandler(errors)
    try:
        app.start()
    except SystemExit:  # nbgrader exits 1 after logging what failed
        pass
    return errors.lines


def _collect(job, module, source_nb, scratch, problems):
    """The graded result, read from the private gradebook and the autograded notebook."""
    autograded = scratch / "autograded" / job["student"] / module.slug
    notebook_path = autograded / f"{module.slug}.ipynb"
    notebook = nbformat.read(notebook_path, as_version=4) if notebook_path.is_file() else {"cells": []}
    by_id = {nbgrader(c).get("grade_id"): c for c in notebook["cells"] if nbgrader(c).get("grade")}
    redact = _redactor(source_nb)
    with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}", job["course_id"]) as gradebook:
        submission = gradebook.find_submission(module.slug, job["student"])
        graded = submission.notebooks[0]
        scores = {g.name: g.auto_score for g in graded.grades}
        comments = {c.name: c.auto_comment for c in graded.comments}
        timestamp = submission.timestamp.isoformat() if submission.timestamp else None
        late_penalty = graded.late_submission_penalty
    cells = [{"grade_id": g, "score": float(scores.get(g) or 0.0), "max_score": float(p),
              "message": _message(by_id.get(g), redact)} for g, p in graded_cells(source_nb)]
    return {"student": job["student"], "module": module.slug, "status": "graded", "problems": problems,
            "cells": cells, "comments": comments, "timestamp": timestamp, "late_penalty": late_penalty,
            "autograded": str(autograded)}


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
    errors = _run_nbgrader(job, module, scratch, _kernelspec(job, scratch, gradelib))
    if errors and not (scratch / "autograded" / job["student"] / module.slug / f"{module.slug}.ipynb").is_file():
        return {"student": job["student"], "module": module.slug, "status": "error", "problems": errors[-3:]}
    return _collect(job, module, source_nb, scratch, problems + SandboxedExecute.problems)


def main(job_path):
    job = json.loads(Path(job_path).read_text())
    started = time.monotonic()
    result = grade(job)
    result["seconds"] = round(time.monotonic() - started, 2)
    Path(job["scratch"], "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
