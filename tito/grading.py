"""Autograding module NN fairly: the student's module NN, the reference modules before it, nothing after.

For each submission a grading copy of the package is assembled under `course/gradelib/NN_name/<student>/`:
the reference `tinytorch/` without module NN and later ones, plus module NN exported from the student's
own notebook. The nbgrader kernel gets it on an absolute PYTHONPATH, so `import tinytorch` finds the
student's code for NN and cannot find the answer key.
"""
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tito import nbdev_ops
from tito.errors import TitoError
from tito.nbgrader_ops import error_lines, run_nbgrader
from tito.notebooks import nbgrader, source
from tito.project import export_targets, module_of_file, read_notebook

NOTEBOOK_DEFAULT_EXP = "#| default_exp"


@dataclass
class Outcome:
    """What grading one submission produced."""
    student: str
    module: str
    problems: list = field(default_factory=list)


def submissions(root, module, students=None):
    """{student: notebook path} for a module, from nbgrader's `course/submitted/<student>/<module>/` layout."""
    submitted = root / "course" / "submitted"
    if students:
        found = {}
        for student in students:
            notebook = submitted / student / module.slug / f"{module.slug}.ipynb"
            if not notebook.parent.is_dir():
                raise TitoError(f"no submission folder {notebook.parent.relative_to(root)} for student '{student}'")
            found[student] = notebook
        return found
    found = {p.parent.parent.name: p for p in sorted(submitted.glob(f"*/{module.slug}/{module.slug}.ipynb"))}
    if not found:
        raise TitoError(f"no submissions for {module.slug}: expected course/submitted/<student>/{module.slug}/{module.slug}.ipynb")
    return found


def _for_export(submitted, reference):
    """The submission as nbdev should export it: locked cells (imports, default_exp) restored from the source."""
    locked = {nbgrader(c)["grade_id"]: source(c) for c in reference["cells"] if nbgrader(c).get("locked")}
    cells = []
    for cell in submitted["cells"]:
        text = source(cell)
        grade_id = nbgrader(cell).get("grade_id")
        if grade_id in locked:
            text = locked[grade_id]
        elif NOTEBOOK_DEFAULT_EXP in text:
            continue  # only the locked cell may choose where the module exports to
        cells.append({**cell, "source": text})
    return {**submitted, "cells": cells}


def _trimmed_reference(root, module, destination):
    """The reference package without module NN or any later module (and without nbdev's symbol index)."""
    shutil.copytree(root / "tinytorch", destination, ignore=shutil.ignore_patterns("__pycache__", "_modidx.py"))
    for path in destination.rglob("*.py"):
        owner = module_of_file(path)
        if owner and int(owner[:2]) >= module.number:
            path.unlink()


def grading_copy(root, module, notebook, destination):
    """Assemble the package a submission is graded against; returns the folder to put on PYTHONPATH."""
    reference = read_notebook(module.notebook)
    submitted = read_notebook(notebook)
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
    return destination


def autograde(root, module, students=None, timeout=60):
    """Grade each submission of `module` against its own grading copy; returns one Outcome per student."""
    outcomes = []
    for student, notebook in submissions(root, module, students).items():
        outcome = Outcome(student, module.slug)
        outcomes.append(outcome)
        try:
            read_notebook(notebook)
            copy = grading_copy(root, module, notebook, root / "course" / "gradelib" / module.slug / student)
        except TitoError as problem:
            outcome.problems.append(str(problem))
            continue
        env = {**os.environ, "PYTHONPATH": str(copy.resolve())}
        result = run_nbgrader(root, "autograde", module.slug, f"--student={student}", "--force",
                              f"--Execute.timeout={timeout}", env=env)
        outcome.problems += [line.split("]", 1)[-1].strip() for line in error_lines(result)]
    return outcomes
