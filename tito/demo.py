"""Submissions for a demo class and for CI: honest, blank, cheating and half-done notebooks."""
import copy
import json
import shutil
import tempfile
from pathlib import Path

from tito.notebooks import nbgrader
from tito.project import export_targets, read_notebook

KINDS = ("honest", "blank", "cheat", "half")


def _solution_ids(notebook):
    return [nbgrader(c)["grade_id"] for c in notebook["cells"] if nbgrader(c).get("solution")]


def _with_cells(notebook, replacements):
    """`notebook` with the cells whose grade_id is in `replacements` given new source."""
    result = copy.deepcopy(notebook)
    for cell in result["cells"]:
        grade_id = nbgrader(cell).get("grade_id")
        if grade_id in replacements:
            cell["source"] = replacements[grade_id]
    return result


def submission(kind, source_nb, release_nb):
    """A notebook a student of `kind` would hand in, built from the source (answers) and the release (stubs)."""
    if kind == "honest":
        return copy.deepcopy(source_nb)
    if kind == "blank":
        return copy.deepcopy(release_nb)
    if kind == "cheat":
        imports = "\n".join(f"#| export\nfrom tinytorch.{t} import *" for t in export_targets(source_nb))
        return _with_cells(release_nb, {gid: imports for gid in _solution_ids(release_nb)})
    if kind == "half":
        ids = _solution_ids(source_nb)
        stubs = {nbgrader(c)["grade_id"]: c["source"] for c in release_nb["cells"] if nbgrader(c).get("solution")}
        return _with_cells(source_nb, {gid: stubs[gid] for gid in ids[len(ids) // 2:]})
    raise ValueError(f"unknown submission kind {kind!r}; expected one of {KINDS}")


def submit(root, module, student, notebook):
    """Place a notebook where nbgrader expects `student`'s submission of `module`."""
    folder = root / "course" / "submitted" / student / module.slug
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module.slug}.ipynb").write_text(json.dumps(notebook, indent=1))


def submit_class(root, modules, kinds=KINDS):
    """One demo student per kind, submitting every module."""
    for module in modules:
        source_nb = read_notebook(module.notebook)
        release_nb = read_notebook(root / "course" / "release" / module.slug / f"{module.slug}.ipynb")
        for kind in kinds:
            submit(root, module, f"demo-{kind}", submission(kind, source_nb, release_nb))


def copy_course(root, destination):
    """The course repository's files (no course/, .git or caches) copied into `destination`; returns it."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "course", ".git", "*.egg-info")
    for name in ("settings.ini", "nbgrader_config.py", "pyproject.toml"):
        shutil.copy2(root / name, destination / name)
    for name in ("modules", "tinytorch", "tito"):
        shutil.copytree(root / name, destination / name, ignore=ignore)
    return destination


def scratch_course(root):
    """A throwaway copy of the course repository, so a demo never touches the real gradebook."""
    return copy_course(root, tempfile.mkdtemp(prefix="tinytorch-demo-"))
