"""nbdev, run the way this course needs it: in a given folder, with its settings.ini, checked."""
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tito.errors import TitoError

HAND_WRITTEN = ("__init__.py", "_todo.py", "_measure.py")  # package files nbdev does not generate
CELL_MARKER = re.compile(r"^# %% \S+\.ipynb #(\S+)")


def _tool(name):
    return str(Path(sys.executable).parent / name)


def run_nbdev(command, root, *args, timeout=300):
    """Run an nbdev command in `root`; a failure becomes a TitoError carrying nbdev's own message."""
    if not Path(_tool(command)).is_file():
        raise TitoError(f"{command} is not installed in this environment: pip install -e '.[dev]'")
    result = subprocess.run([_tool(command), *args], cwd=root, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise TitoError(f"{command} failed in {root}: {detail[-1] if detail else 'no output'}")
    return result


def export(root, notebook=None):
    """`nbdev_export` the whole project, or one notebook of it."""
    run_nbdev("nbdev_export", root, *(["--path", str(notebook)] if notebook else []))


def locate(exported_text, line):
    """(cell id, line within the exported cell) of line `line` (1-based) of a file nbdev exported: nbdev heads
    each cell's code with `# %% <notebook> #<cell id>`."""
    lines = exported_text.splitlines()[:line]
    for number in range(len(lines) - 1, -1, -1):
        match = CELL_MARKER.match(lines[number])
        if match:
            return match.group(1), line - number - 1
    return None, line


def copy_project(root, destination):
    """The files nbdev needs (settings.ini, modules/, tinytorch/) copied to `destination`."""
    destination = Path(destination)
    shutil.copy2(root / "settings.ini", destination / "settings.ini")
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.pyc")
    shutil.copytree(root / "modules", destination / "modules", ignore=ignore)
    shutil.copytree(root / "tinytorch", destination / "tinytorch", ignore=ignore)
    return destination


def _tree_differences(a, b):
    """Relative paths of .py files that differ between two package trees (missing on either side included)."""
    files = lambda top: {p.relative_to(top) for p in top.rglob("*.py") if "__pycache__" not in p.parts}
    left, right = files(a), files(b)
    changed = {p for p in left & right if not filecmp.cmp(a / p, b / p, shallow=False)}
    return sorted(str(p) for p in (left ^ right) | changed)


def check(root):
    """Problems, as sentences: notebooks that nbdev_clean would change, package files a fresh export would change."""
    problems = []
    with tempfile.TemporaryDirectory() as scratch:
        copy = copy_project(root, scratch)
        run_nbdev("nbdev_clean", copy)
        for notebook in sorted((root / "modules").glob("*/*.ipynb")):
            if not filecmp.cmp(notebook, copy / notebook.relative_to(root), shallow=False):
                problems.append(f"{notebook.relative_to(root)} is not clean (outputs or metadata): run `tito build`")
        export(copy)
        for path in _tree_differences(root / "tinytorch", copy / "tinytorch"):
            problems.append(f"tinytorch/{path} differs from a fresh export of modules/: run `tito build`")
    return problems
