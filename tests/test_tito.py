"""tito's user-facing behaviour: --help everywhere, one-line errors, and the student flow from a fresh copy."""
import json
import os
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
