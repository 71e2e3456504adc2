"""tito's user-facing behaviour: --help everywhere, one-line errors, and the student flow from a fresh copy."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tito import course, demo
from tito.cli import parser
from tito.project import find_root, list_modules

ROOT = find_root(__file__)
COMMANDS = sorted(parser()._subparsers._group_actions[0].choices)


def tito(*args, cwd, env_path=None):
    env = {**os.environ, "PYTHONPATH": str(env_path or cwd)}
    return subprocess.run([sys.executable, "-m", "tito", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = tito(command, "--help", cwd=ROOT)
    assert result.returncode == 0 and "usage: tito" in result.stdout


@pytest.mark.parametrize("args, expected", [
    (("release", "99"), "no module '99'"),
    (("export", "nonsense"), "no module 'nonsense'"),
    (("autograde", "01", "--student", "nobody"), "no submission folder"),
])
def test_expected_mistakes_are_one_line_without_traceback(args, expected, tmp_path):
    scratch = demo.scratch_course(ROOT)
    before = sorted(p.relative_to(scratch) for p in scratch.rglob("*"))
    result = tito(*args, cwd=scratch)
    assert result.returncode == 2 and expected in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.relative_to(scratch) for p in scratch.rglob("*") if "__pycache__" not in p.parts) == \
        [p for p in before if "__pycache__" not in p.parts]
    shutil.rmtree(scratch)


def test_outside_a_project_says_so(tmp_path):
    result = tito("status", cwd=tmp_path, env_path=ROOT)
    assert result.returncode == 2 and "no TinyTorch project" in result.stderr


def test_a_notebook_that_is_not_json_is_refused_in_one_line(tmp_path):
    scratch = demo.scratch_course(ROOT)
    (scratch / "modules" / "01_tensor" / "01_tensor.ipynb").write_text("{ not json")
    result = tito("export", "01", cwd=scratch)
    assert result.returncode == 2 and "not a valid notebook" in result.stderr and "Traceback" not in result.stderr
    shutil.rmtree(scratch)


@pytest.fixture(scope="module")
def student_copy(tmp_path_factory):
    """A student's working copy made from a fresh release, as an instructor hands it out."""
    scratch = demo.scratch_course(ROOT)
    course.release(scratch, list_modules(scratch))
    folder = tmp_path_factory.mktemp("students") / "alice"
    result = tito("student", str(folder), cwd=scratch)
    assert result.returncode == 0, result.stderr
    yield scratch, folder
    shutil.rmtree(scratch)


def test_student_copy_holds_no_answers(student_copy):
    _, folder = student_copy
    students_code = [*(folder / "modules").rglob("*.ipynb"), *(folder / "tinytorch").rglob("*.py")]
    text = "".join(p.read_text() for p in students_code)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert not (folder / "nbgrader_config.py").exists()


def test_every_module_of_an_untouched_copy_imports_and_stubs_name_the_module(student_copy):
    _, folder = student_copy
    probe = ("import importlib, pathlib\n"
             "for p in sorted(pathlib.Path('tinytorch').rglob('*.py')):\n"
             "    importlib.import_module('.'.join(p.with_suffix('').parts))\n"
             "import tinytorch.core.tensor as t\n"
             "try:\n    t.Tensor([1.0])\nexcept NotImplementedError as e:\n    print(e)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(folder)})
    assert result.returncode == 0, result.stderr
    assert "Tensor.__init__" in result.stdout and "01_tensor" in result.stdout and "tito export 01" in result.stdout


def test_existing_folder_is_refused_and_left_alone(student_copy):
    scratch, folder = student_copy
    before = (folder / "settings.ini").read_text()
    result = tito("student", str(folder), cwd=scratch)
    assert result.returncode == 2 and "not empty" in result.stderr
    assert (folder / "settings.ini").read_text() == before


def test_student_flow_export_test_status(student_copy):
    scratch, folder = student_copy
    blank = tito("test", "01", cwd=folder)
    assert blank.returncode == 1 and "FAIL" in blank.stdout and "0/100" in blank.stdout

    shutil.copy2(scratch / "modules" / "01_tensor" / "01_tensor.ipynb", folder / "modules" / "01_tensor")
    solved = tito("test", "01", cwd=folder)
    assert solved.returncode == 0, solved.stdout + solved.stderr
    assert "100/100" in solved.stdout and str(folder / "tinytorch") in solved.stdout

    status = tito("status", cwd=folder)
    assert status.returncode == 0
    assert "done  01_tensor" in status.stdout and "next: 02_autograd" in status.stdout

    probe = "import tinytorch.core.tensor as t\ntry:\n    (t.Tensor([1.0], requires_grad=True) * 2).sum().backward()\nexcept NotImplementedError as e:\n    print(e)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(folder)})
    assert "02_autograd" in result.stdout, result.stdout + result.stderr


def test_build_check_passes_on_the_committed_tree():
    result = tito("build", "--check", cwd=ROOT)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [("demo", "01"), ("autograde", "01"), ("grades",), ("feedback", "01"),
                                     ("report", "01"), ("build",), ("release", "01")])
def test_instructor_commands_in_a_student_copy_say_so(student_copy, command):
    _, folder = student_copy
    result = tito(*command, cwd=folder)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == "tito: this is a student copy: run instructor commands in the course repository"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    from tito.gradebook import write_atomically
    previous = os.umask(umask)
    try:
        path = write_atomically(tmp_path / "grades.csv", "student,score\n")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode


def test_version_is_an_answer_not_an_argument_error():
    result = tito("--version", cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith("tito "), result.stdout + result.stderr


def test_every_tito_command_the_docs_name_exists():
    documents = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "course" / "README.md", *(ROOT / "docs").glob("*.md")]
    named = {m for path in documents for m in re.findall(r"\btito ([a-z][a-z-]+)", path.read_text())}
    assert named - set(COMMANDS) == set(), f"documented but not commands: {sorted(named - set(COMMANDS))}"


def test_the_stub_marker_is_the_one_the_notebooks_mention():
    stub = re.search(r'code_stub = \{"python": "([^"\\]*)', (ROOT / "nbgrader_config.py").read_text()).group(1)
    mentions = {m for module in list_modules(ROOT) for m in re.findall(r"`(#* ?YOUR CODE HERE)`", module.notebook.read_text())}
    assert mentions <= {stub}, f"notebooks mention {mentions}, the release stubs say {stub!r}"


def test_grades_names_a_requested_module_without_grades(tmp_path, monkeypatch, capsys):
    from tito import cli, gradebook
    row = gradebook.Score("alice", "01_tensor", 100.0, 100.0, ())
    monkeypatch.setattr(gradebook, "scores", lambda root, modules=None: [row])
    monkeypatch.chdir(ROOT)
    assert cli.main(["grades", "01", "02", "--csv", str(tmp_path / "grades.csv")]) == 0
    captured = capsys.readouterr()
    assert "02_autograd" in captured.out and "02_autograd: no grades yet" in captured.err, captured


def test_report_counts_in_words_and_whole_submissions():
    from tito import report
    result = {"student": "alice", "module": "01_tensor", "status": "graded", "problems": [],
              "cells": [{"grade_id": "test-a", "score": 40.0, "max_score": 100.0, "message": "wrong"}]}
    assert "1 submission;" in report.render("01_tensor", [result])
    figure = report.histogram_figure([40.0], 100.0, "01_tensor scores")
    ticks = figure.axes[0].get_yticks()
    assert all(float(t).is_integer() for t in ticks), ticks


def test_tito_test_prints_no_kernel_warnings(student_copy):
    _, folder = student_copy
    result = tito("test", "01", cwd=folder)
    assert "WARNING" not in result.stdout + result.stderr and "IPKernelApp" not in result.stdout + result.stderr


def test_export_of_a_notebook_that_does_not_compile_names_the_cell_and_keeps_the_previous_export(student_copy, tmp_path):
    _, folder = student_copy
    mine = shutil.copytree(folder, tmp_path / "bob", ignore=shutil.ignore_patterns("__pycache__", ".tito"))
    exported = mine / "tinytorch" / "core" / "tensor.py"
    before = exported.read_bytes()
    notebook_path = mine / "modules" / "01_tensor" / "01_tensor.ipynb"
    notebook = json.loads(notebook_path.read_text())
    cell = next(c for c in notebook["cells"] if c.get("id") == "broadcast")
    cell["source"] = "".join(cell["source"]).replace("    ### YOUR CODE HERE\n", "    ### YOUR CODE HERE\n    shape = (1,\n", 1)
    assert "shape = (1," in cell["source"]
    notebook_path.write_text(json.dumps(notebook))
    result = tito("export", "01", cwd=mine)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "cell 'broadcast'" in result.stderr and "line " in result.stderr, result.stderr
    assert "tinytorch/core/tensor.py" in result.stderr and "unchanged" in result.stderr, result.stderr
    assert exported.read_bytes() == before


@pytest.mark.parametrize("keep", [False, True])
def test_demo_removes_its_scratch_course_unless_kept(monkeypatch, capsys, keep):
    from tito import cli, grading
    made = []
    monkeypatch.setattr(cli.demo, "scratch_course", lambda root: made.append(demo.copy_course(root, demo.tempfile.mkdtemp())) or made[-1])
    monkeypatch.setattr(cli.course, "release", lambda root, modules: [])
    monkeypatch.setattr(cli.demo, "submit_class", lambda root, modules: None)
    monkeypatch.setattr(grading, "autograde", lambda *a, **k: [])
    monkeypatch.chdir(ROOT)
    assert cli.main(["demo", "01", "--no-sandbox", *(["--keep"] if keep else [])]) == 0
    assert made and made[0].exists() == keep
    shutil.rmtree(made[0], ignore_errors=True)
