"""Sandboxed grading wherever the project, its virtualenv and $TMPDIR live (under /tmp, paths with spaces),
and a sandbox probe whose message names the real cause."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tito import course, demo, sandbox
from tito.errors import TitoError
from tito.project import find_root, resolve

ROOT = find_root(__file__)


def needs_bwrap():
    if not shutil.which("bwrap"):
        if os.environ.get("CI"):
            pytest.fail("CI needs bubblewrap: apt-get install -y bubblewrap")
        pytest.skip("bubblewrap not installed")


def clone_with_venv(destination):
    """The course copied to `destination`, with `.venv` there standing for this interpreter's virtualenv
    (a link to it), so the interpreter's prefix lives where the clone lives. Returns its python."""
    demo.copy_course(ROOT, destination)
    (destination / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    python = destination / ".venv" / "bin" / "python"
    prefix = subprocess.run([str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert prefix.stdout.strip() == str(destination / ".venv"), prefix
    return python


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["clone under /tmp", "path with a space, $TMPDIR with a space"])
def test_a_clone_grades_module_01_through_the_sandbox(layout, tmp_path):
    needs_bwrap()
    spaced = "space" in layout
    clone = tmp_path / ("my course" if spaced else "course") / "tinytorch"
    assert str(clone).startswith("/tmp/") or not str(tmp_path).startswith("/tmp/")
    python = clone_with_venv(clone)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if spaced:
        env["TMPDIR"] = str(tmp_path / "scratch space")
        Path(env["TMPDIR"]).mkdir()
    module = resolve(clone, ["01"])[0]
    course.release(clone, [module])
    demo.submit(clone, module, "alice", json.loads(module.notebook.read_text()))
    result = subprocess.run([str(python), "-m", "tito", "autograde", "01"], cwd=clone, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alice" in result.stdout and "100/100" in result.stdout, result.stdout


def fake_bwrap(folder, stderr_line):
    """A `bwrap` that fails the way bubblewrap fails where it cannot create namespaces."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "bwrap"
    script.write_text(f"#!/bin/sh\necho '{stderr_line}' >&2\nexit 1\n")
    script.chmod(0o755)
    return folder


def test_probe_blames_user_namespaces_only_when_bubblewrap_cannot_create_them(tmp_path, monkeypatch):
    folder = fake_bwrap(tmp_path / "bin", "bwrap: setting up uid map: Permission denied")
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    with pytest.raises(TitoError) as error:
        sandbox.require()
    assert "user namespaces" in str(error.value) and "uid map" in str(error.value)


def test_probe_names_what_the_sandbox_cannot_see(monkeypatch):
    """A sandbox that works but hides the interpreter: the message says so, not 'enable user namespaces'."""
    needs_bwrap()
    monkeypatch.setattr(sandbox, "interpreter_paths", lambda: [])
    with pytest.raises(TitoError) as error:
        sandbox.require()
    message = str(error.value)
    assert "user namespaces" not in message and sys.executable in message, message


def test_demo_script_checks_the_sandbox_before_building(tmp_path):
    folder = fake_bwrap(tmp_path / "bin", "bwrap: setting up uid map: Permission denied")
    env = {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "user namespaces" in result.stderr and "exported" not in result.stdout and "checked" not in result.stdout
