"""The course round trip, on a scratch copy of this repository: release, submit, autograde, read the gradebook.

Reference solutions score full marks on every graded cell, untouched releases and answer-importing
submissions score zero, half-done work scores in between, and each mutant loses exactly the points of
the cells that test what it broke.
"""
import json
import os
import shutil

import pytest

from tests.mutants import MUTANTS
from tito import course, demo, gradebook, grading
from tito.notebooks import nbgrader
from tito.project import find_root, list_modules, read_notebook

ROOT = find_root(__file__)
ONLY = os.environ.get("TINYTORCH_MODULES", "").replace(",", " ").split()  # e.g. "02 03": a faster round trip while editing
MODULES = [m.slug for m in list_modules(ROOT) if not ONLY or m.slug[:2] in ONLY]
SELECTED_MUTANTS = [m for m in MUTANTS if m.module in MODULES]
pytestmark = pytest.mark.slow


def mutated(source_nb, mutant):
    notebook = json.loads(json.dumps(source_nb))
    cell = next(c for c in notebook["cells"] if nbgrader(c).get("grade_id") == mutant.cell)
    text = "".join(cell["source"])
    assert mutant.old in text, f"mutant of {mutant.module}/{mutant.cell} no longer matches the reference"
    cell["source"] = text.replace(mutant.old, mutant.new, 1)
    return notebook


@pytest.fixture(scope="module")
def graded():
    """Grade the demo class plus every mutant once; {(student, module): Score}."""
    scratch = demo.scratch_course(ROOT)
    modules = [m for m in list_modules(scratch) if m.slug in MODULES]
    course.release(scratch, modules)
    demo.submit_class(scratch, modules)
    by_slug = {m.slug: m for m in modules}
    for mutant in SELECTED_MUTANTS:
        module = by_slug[mutant.module]
        demo.submit(scratch, module, mutant.student, mutated(read_notebook(module.notebook), mutant))
    problems = [o for m in modules for o in grading.autograde(scratch, m) if o.problems]
    assert not problems, problems
    yield {(s.student, s.module): s for s in gradebook.scores(scratch)}
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.parametrize("module", MODULES)
def test_reference_scores_full_marks_on_every_cell(graded, module):
    score = graded[("demo-honest", module)]
    assert score.max_score == 100
    assert [c.grade_id for c in score.cells if c.score != c.max_score] == []


@pytest.mark.parametrize("module", MODULES)
def test_untouched_release_scores_zero(graded, module):
    assert [c.grade_id for c in graded[("demo-blank", module)].cells if c.score] == []


@pytest.mark.parametrize("module", MODULES)
def test_importing_the_answer_scores_zero(graded, module):
    assert graded[("demo-cheat", module)].score == 0


@pytest.mark.parametrize("module", MODULES)
def test_half_done_scores_in_between(graded, module):
    assert 0 < graded[("demo-half", module)].score < 100


@pytest.mark.parametrize("mutant", SELECTED_MUTANTS, ids=lambda m: f"{m.module}-{m.cell}")
def test_mutant_loses_exactly_the_cells_that_test_it(graded, mutant):
    cells = graded[(mutant.student, mutant.module)].cells
    assert {c.grade_id for c in cells if c.score != c.max_score} == mutant.fails
