"""Adversarial autograding, on a scratch copy of the course (module 01_tensor).

Every attack is a generated submission with the score it must get. They are graded in one parallel,
sandboxed batch beside honest, blank and half-done work, after a bystander's grade was stored; the
batch must give every student the expected score, leave the bystander's grade, the course files and
every submitted file untouched, and store in the gradebook exactly what it reports. Further small
batches cover the total time limit, regrading, Ctrl-C in the middle of a batch, and Dask.
"""
import copy
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tito import cli, course, demo, feedback, gradebook, grading, report, sandbox, structure
from tito.errors import TitoError
from tito.notebooks import graded_cells, nbgrader, source
from tito.project import find_root, read_notebook, resolve

ROOT = find_root(__file__)
LIMITS = grading.Limits(cell_timeout=5, total_timeout=60, memory_mb=1536)
MATMUL_POINTS = 8  # test-matmul: the only graded cell that calls matmul
HALF = 60  # the first 8 of 16 solution cells done (tensor-class .. indexing): 8+8+8+6+8+8+8+6 points
pytestmark = pytest.mark.slow


def cell_of(notebook, grade_id):
    return next(c for c in notebook["cells"] if nbgrader(c).get("grade_id") == grade_id)


def in_matmul(honest, code):
    """The honest notebook with `code` run at the start of matmul's body (so when test-matmul calls it)."""
    notebook = copy.deepcopy(honest)
    cell = cell_of(notebook, "matmul")
    body = "\n".join("    " + line for line in code.splitlines())
    cell["source"] = source(cell).replace("    a, b = _pair(a, b)\n", f"    a, b = _pair(a, b)\n{body}\n", 1)
    assert body in cell["source"]
    return notebook


def top_of_matmul_cell(honest, code):
    """The honest notebook with `code` run when matmul's cell runs (before matmul exists)."""
    notebook = copy.deepcopy(honest)
    cell = cell_of(notebook, "matmul")
    cell["source"] = source(cell).replace("#| export\n", f"#| export\n{code}\n", 1)
    return notebook


def probe(blank, honest, secret_check):
    """The blank release whose Tensor class exists only if `secret_check` (an expression) is true:
    test-tensor's points measure whether the secret was visible."""
    notebook = copy.deepcopy(blank)
    honest_class = source(cell_of(honest, "tensor-class")).replace("#| export\n", "", 1)
    guard = (f"#| export\nimport glob, os\ntry:\n    seen = {secret_check}\nexcept OSError:\n    seen = False\n"
             "if not seen:\n    raise RuntimeError('the answer key is out of reach')\n")
    cell_of(notebook, "tensor-class")["source"] = guard + honest_class
    return notebook


def readable(path):
    return f"bool(open({str(path)!r}, 'rb').read(1))"


def without(notebook, grade_id):
    result = copy.deepcopy(notebook)
    result["cells"] = [c for c in result["cells"] if nbgrader(c).get("grade_id") != grade_id]
    return result


def stripped(notebook, new_ids=False):
    """What `nbdev_clean` without the nbgrader keys hands in (optionally with fresh cell ids too)."""
    result = copy.deepcopy(notebook)
    for cell in result["cells"]:
        cell["metadata"] = {}
        if new_ids:
            cell["id"] = uuid.uuid4().hex[:8]
    return result


def duplicated_test(honest):
    result = copy.deepcopy(honest)
    test = cell_of(result, "test-matmul")
    decoy = copy.deepcopy(test)
    decoy["source"], decoy["id"] = "assert True  # my own version of the test", "decoy"
    result["cells"].insert(result["cells"].index(test), decoy)
    return result


def retyped(notebook, grade_id):
    result = copy.deepcopy(notebook)
    cell = cell_of(result, grade_id)
    cell.update(cell_type="markdown")
    cell.pop("outputs", None)
    cell.pop("execution_count", None)
    return result


def with_tests_replaced(blank):
    result = copy.deepcopy(blank)
    for cell in result["cells"]:
        if nbgrader(cell).get("grade"):
            cell["source"] = "pass"
    return result


def hash_tree(*folders):
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def course_copy():
    """A scratch course with module 01 released, and the honest and blank notebooks."""
    scratch = demo.scratch_course(ROOT)
    module = resolve(scratch, ["01"])[0]
    course.release(scratch, [module])
    honest = read_notebook(module.notebook)
    blank = read_notebook(scratch / "course" / "release" / module.slug / f"{module.slug}.ipynb")
    yield scratch, module, honest, blank
    shutil.rmtree(scratch, ignore_errors=True)


def submit(scratch, module, student, notebook=None, raw=None, name=None):
    folder = scratch / "course" / "submitted" / student / module.slug
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{module.slug}.ipynb")
    path.write_bytes(raw if raw is not None else json.dumps(notebook, indent=1).encode())


def attacks(scratch, module, honest, blank):
    """{student: (notebook or raw bytes, expected score, text (or texts, one of) its stored result must mention)}."""
    half = demo.submission("half", honest, blank)
    peers = scratch / "course" / "submitted" / "honest" / module.slug / f"{module.slug}.ipynb"
    victims = [str(scratch / "tinytorch" / "core" / "tensor.py"), str(scratch / "course" / "gradebook.db"), str(peers)]
    return {
        "honest": (honest, 100, None),
        "blank": (blank, 0, None),
        "half": (half, HALF, None),
        # one submission must not stop the batch, and costs only what did not run
        "hang": (in_matmul(honest, "while True:\n    pass"), 100 - MATMUL_POINTS, "did not finish within 5 s"),
        "ignore-sigint": (in_matmul(honest, "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"),
                          100 - MATMUL_POINTS, "ignored the interrupt"),
        "memory": (in_matmul(honest, "hog = []\nwhile True:\n    hog.append(bytearray(2**26))"), 100 - MATMUL_POINTS, "MemoryError"),
        "print-flood": (in_matmul(honest, "while True:\n    print('flood ' * 10)"), 100 - MATMUL_POINTS,
                        ("did not finish", "MemoryError")),  # whichever comes first: the time limit or the cap
        "sys-exit": (in_matmul(honest, "import sys\nsys.exit(3)"), 100 - MATMUL_POINTS, "SystemExit"),
        "os-exit": (in_matmul(honest, "import os\nos._exit(0)"), 100 - MATMUL_POINTS, "kernel died"),
        "exit-at-top": (top_of_matmul_cell(honest, "import os\nos._exit(1)"), 100 - MATMUL_POINTS, "kernel died"),
        "syntax-error": (_with_matmul_source(honest, "#| export\ndef matmul(a, b:\n    pass\n"), 100 - MATMUL_POINTS,
                         "nbdev could not export the notebook"),
        "input": (in_matmul(honest, "input('continue? ')"), 100 - MATMUL_POINTS, "StdinNotImplementedError"),
        "kill-kernel": (in_matmul(honest, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
                        100 - MATMUL_POINTS, "kernel died"),
        "kill-grader": (in_matmul(honest, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                                          "os.killpg(0, signal.SIGKILL)"), 100 - MATMUL_POINTS, "kernel died"),
        # every line the kernel has compiled so far (hidden checks run only after every visible test)
        "leak-hidden": (in_matmul(honest, "import linecache\nraise ValueError(' '.join(line for name in list(linecache.cache)"
                                          " for line in linecache.getlines(name)))"),
                        100 - MATMUL_POINTS, "ValueError"),
        # no access to the answer key, other submissions or the gradebook
        "cheat-import": (demo.submission("cheat", honest, blank), 0, None),
        "steal-source": (probe(blank, honest, readable(scratch / "modules" / module.slug / f"{module.slug}.ipynb")), 0, None),
        "steal-reference": (probe(blank, honest, readable(scratch / "tinytorch" / "core" / "tensor.py")), 0, None),
        "steal-installed": (probe(blank, honest, readable(ROOT / "tinytorch" / "core" / "tensor.py")), 0, None),
        "steal-later": (probe(blank, honest, readable(scratch / "tinytorch" / "core" / "autograd.py")), 0, None),
        "steal-peer": (probe(blank, honest, readable(peers)), 0, None),
        "steal-gradebook": (probe(blank, honest, readable(scratch / "course" / "gradebook.db")), 0, None),
        "steal-own-hidden": (probe(blank, honest, "glob.glob('*.ipynb') + glob.glob('../**/*.ipynb', recursive=True)"), 0, None),
        "vandal": (in_matmul(honest, f"for victim in {victims!r}:\n    try:\n        open(victim, 'w').write('gone')\n"
                                     "    except OSError:\n        pass"), 100, None),
        # nbdev joins a directive's argument onto its destination: this would append to the reference package
        "export-escape": (_with_cell(honest, f"#| export {scratch / 'tinytorch' / 'core' / 'autograd'}\nPWNED = True"), 100, None),
        # structure: repaired and reported, never a silent 0 and never extra points
        "deleted-test": (without(honest, "test-matmul"), 100, "'test-matmul' was deleted; restored"),
        "deleted-half": (without(half, "test-matmul"), HALF, "'test-matmul' was deleted; restored"),
        "tests-replaced": (with_tests_replaced(blank), 0, None),
        "duplicated-test": (duplicated_test(honest), 100, "'test-matmul' appears 2 times"),
        "retyped-test": (retyped(half, "test-matmul"), HALF, "changed from code to markdown"),
        "retyped-solution": (retyped(honest, "matmul"), 100, "changed from code to markdown"),
        "stripped": (stripped(honest), 100, "nbgrader metadata was missing"),
        "stripped-new-ids": (stripped(honest, new_ids=True), 100, "nbgrader metadata was missing"),
        "not-a-notebook": (b"\x89PNG\r\n\x1a\n not a notebook", 0, "not JSON"),
        "json-not-notebook": ({"hello": "world"}, 0, "not a Jupyter notebook"),
        "broken-cells": ({**blank, "cells": [{"cell_type": "code"}]}, 0, "not a valid Jupyter notebook"),
    }


def _with_matmul_source(notebook, text):
    result = copy.deepcopy(notebook)
    cell_of(result, "matmul")["source"] = text
    return result


def _with_cell(notebook, text):
    result = copy.deepcopy(notebook)
    result["cells"].append({"cell_type": "code", "execution_count": None, "id": "extra", "metadata": {},
                            "outputs": [], "source": text})
    return result


@pytest.fixture(scope="module")
def batch(course_copy):
    """Store a bystander's grade, then grade every attack and the honest, blank and half work in one batch."""
    scratch, module, honest, blank = course_copy
    submit(scratch, module, "bystander", honest)
    grading.autograde(scratch, module, ["bystander"], LIMITS)
    bystander = [s for s in gradebook.scores(scratch) if s.student == "bystander"]
    cases = attacks(scratch, module, honest, blank)
    for student, (notebook, _, _) in cases.items():
        if isinstance(notebook, bytes):
            submit(scratch, module, student, raw=notebook)
        else:
            submit(scratch, module, student, notebook)
    submit(scratch, module, "wrong-name", honest, name="homework.ipynb")
    cases["wrong-name"] = (None, 0, "missing (the submission holds homework.ipynb)")
    key = scratch / "modules" / module.slug / f"{module.slug}.ipynb"
    for student, link in (("linked-notebook", f"{module.slug}.ipynb"), ("steal-by-link", "answers.ipynb")):
        (scratch / "course" / "submitted" / student / module.slug).mkdir(parents=True)
        (scratch / "course" / "submitted" / student / module.slug / link).symlink_to(key)
    submit(scratch, module, "steal-by-link", probe(blank, honest, readable("answers.ipynb")))
    cases["linked-notebook"] = (None, 0, "a symbolic link, not a notebook")
    cases["steal-by-link"] = (None, 0, None)
    submitted = hash_tree(scratch / "course" / "submitted")
    course_files = hash_tree(scratch / "modules", scratch / "tinytorch")
    outcomes = grading.autograde(scratch, module, sorted(cases), LIMITS, workers=2)
    return {"scratch": scratch, "module": module, "cases": cases, "outcomes": {o.student: o for o in outcomes},
            "scores": {s.student: s for s in gradebook.scores(scratch)}, "bystander": bystander,
            "submitted": submitted, "course_files": course_files, "honest": honest}


def test_every_submission_gets_its_expected_score(batch):
    wrong = {student: (batch["scores"][student].score, expected)
             for student, (_, expected, _) in batch["cases"].items() if batch["scores"][student].score != expected}
    assert wrong == {}, wrong


def test_every_problem_is_reported_with_its_reason(batch):
    missing = {}
    for student, (_, _, reason) in batch["cases"].items():
        result = json.loads((batch["scratch"] / "course" / "results" / "01_tensor" / f"{student}.json").read_text())
        said = " ".join(result["problems"] + [c["message"] for c in result["cells"]])
        if reason and not any(r in said for r in ([reason] if isinstance(reason, str) else reason)):
            missing[student] = said
    assert missing == {}, missing


def test_no_grader_errors_and_every_result_is_stored_as_reported(batch):
    assert [o.student for o in batch["outcomes"].values() if o.status == "error"] == []
    for student, outcome in batch["outcomes"].items():
        stored = batch["scores"][student]
        assert (stored.score, stored.max_score) == (outcome.score, outcome.max_score), student
        result = json.loads((batch["scratch"] / "course" / "results" / "01_tensor" / f"{student}.json").read_text())
        assert {c.grade_id: c.score for c in stored.cells} == {c["grade_id"]: c["score"] for c in result["cells"]}


def test_the_batch_leaves_everything_else_untouched(batch):
    scratch = batch["scratch"]
    assert [s for s in gradebook.scores(scratch) if s.student == "bystander"] == batch["bystander"]
    assert hash_tree(scratch / "course" / "submitted") == batch["submitted"], "a submitted file was modified"
    assert hash_tree(scratch / "modules", scratch / "tinytorch") == batch["course_files"]
    with sqlite3.connect(scratch / "course" / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM submitted_assignment").fetchone()[0] == len(batch["cases"]) + 1


def test_feedback_shows_every_test_and_no_hidden_test_source(batch):
    scratch, module = batch["scratch"], batch["module"]
    paths = feedback.write(scratch, module)
    assert len(paths) == len(batch["cases"]) + 1
    hidden = [line.strip() for c in batch["honest"]["cells"] for block in structure.HIDDEN_BLOCK.findall(source(c))
              for line in block.splitlines()[1:-1] if len(line.strip()) >= 12]
    assert hidden
    for path in paths:
        text = path.read_text()
        assert text.count("| test-") == len(graded_cells(batch["honest"])), path
        assert [line for line in hidden if line in text] == [], path
    leak = (scratch / "course" / "feedback" / "leak-hidden" / module.slug / f"{module.slug}.md").read_text()
    assert f"| test-matmul | 0/{MATMUL_POINTS} | FAIL | ValueError:" in leak


def test_report_has_the_distribution_the_failures_and_a_histogram(batch):
    markdown, png = report.write(batch["scratch"], batch["module"])
    text = markdown.read_text()
    assert f"{len(batch['cases']) + 1} submissions" in text
    assert re.search(r"\| 90 to 100 \| \d+ \|", text)
    assert f"| test-matmul | {MATMUL_POINTS} |" in text and "## Submissions with problems" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(markdown.parent.glob(".*")), "a temporary file was left behind"


def test_probes_see_the_secrets_without_the_sandbox(course_copy, batch):
    """The probes are real: unsandboxed, the same submission reads the source notebook and scores test-tensor's points."""
    scratch, module, honest, blank = course_copy
    submit(scratch, module, "unsandboxed-probe", probe(blank, honest, readable(
        scratch / "modules" / module.slug / f"{module.slug}.ipynb")))
    [outcome] = grading.autograde(scratch, module, ["unsandboxed-probe"], LIMITS, sandboxed=False)
    assert outcome.score == dict(graded_cells(honest))["test-tensor"]


def test_total_time_limit_scores_only_what_ran(course_copy, batch):
    scratch, module, honest, _ = course_copy
    submit(scratch, module, "slow", top_of_matmul_cell(honest, "while True:\n    pass"))
    submit(scratch, module, "prompt", honest)
    outcomes = {o.student: o for o in grading.autograde(scratch, module, ["slow", "prompt"],
                                                        grading.Limits(cell_timeout=60, total_timeout=20), workers=2)}
    graded = [g for g, _ in graded_cells(honest)]
    before_matmul = sum(p for _, p in graded_cells(honest)[:graded.index("test-matmul")])
    assert (outcomes["slow"].score, outcomes["prompt"].score) == (before_matmul, 100)
    assert any("used up its 20 s" in p for p in outcomes["slow"].problems)


def test_a_worker_past_its_time_is_killed_and_scores_0(course_copy, batch, monkeypatch):
    """The last line of defence, if a worker hangs outside the notebook: killed, 0, reason, batch goes on."""
    scratch, module, honest, _ = course_copy
    submit(scratch, module, "stuck-worker", honest)
    monkeypatch.setattr(grading, "STARTUP_GRACE", 0)  # a 1 s limit: the worker is still importing nbgrader
    [outcome] = grading.autograde(scratch, module, ["stuck-worker"], grading.Limits(total_timeout=1))
    assert (outcome.status, outcome.score) == ("killed", 0) and "did not finish within 1 s" in outcome.problems[0]
    assert [s.score for s in gradebook.scores(scratch) if s.student == "stuck-worker"] == [0]


def test_regrading_is_idempotent(batch):
    scratch, module = batch["scratch"], batch["module"]
    again = ["honest", "half", "os-exit", "stripped", "not-a-notebook"]
    with sqlite3.connect(scratch / "course" / "gradebook.db") as db:
        rows = db.execute("SELECT COUNT(*) FROM grade").fetchone()
    grading.autograde(scratch, module, again, LIMITS, workers=2)
    after = {s.student: s for s in gradebook.scores(scratch)}
    assert {s: after[s] for s in again} == {s: batch["scores"][s] for s in again}
    with sqlite3.connect(scratch / "course" / "gradebook.db") as db:
        assert db.execute("SELECT COUNT(*) FROM grade").fetchone() == rows


def test_ctrl_c_mid_batch_loses_no_grade(batch):
    scratch = batch["scratch"]
    before = gradebook.scores(scratch)
    students = ["blank", "hang", "ignore-sigint", "honest"]
    command = [sys.executable, "-m", "tito", "autograde", "01", "--timeout", "5", "--workers", "2"]
    command += [arg for s in students for arg in ("--student", s)]
    mark = uuid.uuid4().hex  # inherited by every process the batch starts
    process = subprocess.Popen(command, cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TITO_TEST_MARK": mark})
    first = process.stdout.readline()  # printed once the first result is stored
    assert first.startswith("01_tensor"), first + process.stderr.read()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in stderr
    assert gradebook.scores(scratch) == before  # every grade still there (regrading gives the same ones)
    with sqlite3.connect(scratch / "course" / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    leftovers = [p.name for p in Path("/proc").glob("[0-9]*") if mark.encode() in _environ(p)]
    assert leftovers == [], "worker or sandbox processes survived the interrupt"


def _environ(process):
    try:
        return (process / "environ").read_bytes()
    except OSError:
        return b""


def test_the_same_grading_runs_on_dask(course_copy, batch):
    from distributed import Client

    scratch, module, honest, blank = course_copy
    for kind, notebook in (("honest", honest), ("blank", blank), ("half", demo.submission("half", honest, blank))):
        submit(scratch, module, f"dask-{kind}", notebook)
    with Client(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as client:
        outcomes = grading.autograde(scratch, module, ["dask-honest", "dask-blank", "dask-half"], LIMITS,
                                     executor=client.get_executor())
    assert [(o.student, o.score) for o in outcomes] == [("dask-blank", 0), ("dask-half", HALF), ("dask-honest", 100)]
    stored = {s.student: s.score for s in gradebook.scores(scratch)}
    assert (stored["dask-blank"], stored["dask-half"], stored["dask-honest"]) == (0, HALF, 100)


def test_missing_bubblewrap_fails_loudly_in_one_line(monkeypatch, capsys, course_copy):
    scratch = course_copy[0]
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.chdir(scratch)
    assert cli.main(["autograde", "01"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "apt-get install -y bubblewrap" in error and "--no-sandbox" in error
    with pytest.raises(TitoError):
        sandbox.require()
