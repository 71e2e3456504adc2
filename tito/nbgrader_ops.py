"""nbgrader, run from the project root (where nbgrader_config.py is) with explicit settings."""
import subprocess
import sys
from pathlib import Path

from tito.errors import TitoError


def run_nbgrader(root, *args, env=None, timeout=None):
    """Run `nbgrader args...` in `root`; returns the CompletedProcess (exit status is not a grade signal)."""
    if not (root / "nbgrader_config.py").is_file():
        raise TitoError("this is a student copy: run instructor commands in the course repository")
    command = [str(Path(sys.executable).parent / "nbgrader"), *args]
    try:
        return subprocess.run(command, cwd=root, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TitoError(f"nbgrader {args[0]} did not finish within {timeout} s") from None


def error_lines(result):
    """nbgrader's [ERROR] lines (it logs to stderr)."""
    return [line for line in (result.stderr + result.stdout).splitlines() if "[ERROR]" in line]
