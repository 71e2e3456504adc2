"""Hidden checks that a submission can neither fake nor read out (issue 12), on a scratch copy of module 01.

The wrong answer: `add` returns zeros of the right shape. Every attacker is that wrong answer plus an
attack: replacing what tests compare with (NumPy, builtins, math, the check reporter itself, modules in
`sys.modules`), hunting expected values in frames and the garbage collector, forging reports, or reading
the hidden checks while they run and sending them out through an error message, stdout, files, the exit
code or the time taken. All are graded in one sandboxed batch beside the honest and the plain wrong
submission: no attacker may score more than the plain wrong answer, and no hidden-check line may appear
in anything a student sees (feedback, result messages), plain, base64, hex or reversed.
"""
import base64
import binascii
import copy
import json
import re

import pytest

from tests.test_autograder import course_copy  # noqa: F401 (a scratch course with module 01 released)
from tito import checks, demo, feedback, grading, selftest
from tito.notebooks import nbgrader, source

LIMITS = grading.Limits(cell_timeout=5, total_timeout=90, memory_mb=1536)
pytestmark = pytest.mark.slow

ZEROS = "data = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=a.dtype)"

# run when the first solution cell runs, before any test: what the dishonest student wrote
PATCH_NUMPY = """import numpy
agree = lambda *args, **kwargs: True
numpy.allclose = numpy.isclose = numpy.array_equal = numpy.array_equiv = agree
numpy.testing.assert_allclose = numpy.testing.assert_array_equal = numpy.testing.assert_equal = lambda *a, **k: None
numpy.testing.assert_almost_equal = numpy.testing.assert_array_almost_equal = lambda *a, **k: None"""
PATCH_BUILTINS = """import builtins
builtins.all = builtins.any = lambda *args: True"""
PATCH_MATH = """import math
math.isclose = lambda *args, **kwargs: True
math.isnan = lambda x: False"""


def reporter_replaced_by(code):
    """Attack code: once the grader's reporter arrives (through exec), `code` runs with it in `namespace`."""
    body = "\n".join(" " * 12 + line for line in code.splitlines())
    return ("import builtins\nreal_exec = builtins.exec\ndef spying_exec(code, *namespaces):\n"
            "    result = real_exec(code, *namespaces)\n    for namespace in namespaces:\n"
            f"        if isinstance(namespace, dict) and 'check' in namespace:\n{body}\n"
            "    return result\nbuiltins.exec = spying_exec")


SILENT_CHECK = reporter_replaced_by("namespace['check'] = lambda *args, **kwargs: None")
AGREEING_CHECK = reporter_replaced_by("""real_check = namespace['check']
def check(message, value, *args, **kwargs):
    real_check(message, True)
check.raises = lambda message, call, *args: real_check(message, {'raised': True, 'mentions': [True] * (len(args) - 1)})
namespace['check'] = check""")
PATCH_DISPLAY = """import IPython.display
IPython.display.display = lambda *args, **kwargs: None"""
SWAP_MODULES = """import sys, types, json as real_json
fake_json = types.ModuleType('json')
fake_json.dumps = lambda obj, *a, **k: real_json.dumps({'message': 'ok', 'value': True, 'rtol': 1e9, 'atol': 1e9})
fake_json.loads = real_json.loads
sys.modules['json'] = fake_json
fake_testing = types.ModuleType('numpy.testing')
fake_testing.assert_allclose = fake_testing.assert_array_equal = lambda *a, **k: None
sys.modules['numpy.testing'] = fake_testing"""
FORGED_REPORTS = """from IPython.display import display
for value in (True, 0.0, [0.0]):
    display({'application/x-tito-check+json': '{"message": "forged", "value": %s, "rtol": 1e9, "atol": 1e9}'
             % str(value).lower()}, raw=True)"""

# run inside add(), so during the hidden checks too
HUNT = """import gc, inspect
shape = np.broadcast_shapes(a.shape, b.shape)
for frame in inspect.stack():
    for value in list(frame.frame.f_locals.values()):
        if isinstance(value, np.ndarray) and value.shape == shape and value is not a.data and value is not b.data:
            return Tensor(value)
for found in gc.get_objects():
    if isinstance(found, dict) and ('expected' in found or 'record' in found or 'value' in found):
        return Tensor(np.asarray(found.get('value', 0.0), dtype=a.dtype) + np.zeros(shape, dtype=a.dtype))"""
FORGE_IN_ADD = """from IPython.display import display
display({'application/x-tito-check+json': json.dumps({'message': 'forged', 'value': None, 'rtol': 1e9, 'atol': 1e9})}, raw=True)"""
REPORT_BOMB = """import inspect
from IPython.display import display
if any(frame.function == 'hidden_checks' for frame in inspect.stack()):
  display({'application/x-tito-check+json': '{"value": {"array": "' + 'A' * 30_000_000 + '", "dtype": "<f8", "shape": [1]}}'}, raw=True)
  display({'application/x-tito-check+json': '{"value": {"array": "", "dtype": "|O", "shape": [0]}}'}, raw=True)"""

# what a thief inside the hidden checks can read: the source of every frame's code, and its constants
READ_HIDDEN = """import inspect, linecache
stolen = []
for frame in inspect.stack():
    stolen += linecache.getlines(frame.frame.f_code.co_filename)
    stolen += [str(c) for c in frame.frame.f_code.co_consts]
stolen = ''.join(stolen)
if 'hidden_checks' in stolen:
"""
LEAKS = {
    "leak-plain": "    raise ValueError(stolen)",
    "leak-base64": "    import base64\n    raise ValueError(base64.b64encode(stolen.encode()).decode())",
    "leak-hex": "    raise AssertionError(stolen.encode().hex())",
    "leak-reversed": "    raise ValueError(stolen[::-1])",
    "leak-stdout": "    import sys\n    print(stolen)\n    sys.stderr.write(stolen.encode().hex())",
    "leak-files": "    import os, glob\n    for folder in ['.', '/tmp', os.path.expanduser('~')] + glob.glob('/tmp/*/') + glob.glob('/*/'):\n"
                  "        try:\n            open(os.path.join(folder, 'leak.txt'), 'w').write(stolen)\n        except OSError:\n"
                  "            pass",
    "leak-exit": "    import os\n    os._exit(len(stolen) % 200 + 1)",
    "leak-timing": "    import time\n    time.sleep(ord(stolen[0]) % 7 + 3)",
}


def cell_of(notebook, grade_id):
    return next(c for c in notebook["cells"] if nbgrader(c).get("grade_id") == grade_id)


def wrong(honest, at_top="", in_add=""):
    """The honest notebook with `add` returning zeros; `at_top` runs first, `in_add` at the start of add."""
    notebook = copy.deepcopy(honest)
    cell = cell_of(notebook, "elementwise")
    text = source(cell).replace("data = a.data + b.data", ZEROS, 1)
    assert ZEROS in text
    if in_add:
        start = '    a, b = _elementwise("add", a, b)\n'
        assert start in text
        text = text.replace(start, start + "\n".join("    " + line for line in in_add.splitlines()) + "\n", 1)
    cell["source"] = text
    if at_top:
        first = cell_of(notebook, "tensor-class")
        first["source"] = source(first).replace("#| export\n", f"#| export\n{at_top}\n", 1)
    return notebook


def attackers(honest):
    cases = {
        "patch-numpy": wrong(honest, at_top=PATCH_NUMPY),
        "patch-builtins": wrong(honest, at_top=PATCH_BUILTINS),
        "patch-math": wrong(honest, at_top=PATCH_MATH),
        "silent-check": wrong(honest, at_top=SILENT_CHECK),
        "agreeing-check": wrong(honest, at_top=AGREEING_CHECK),
        "patch-display": wrong(honest, at_top=PATCH_DISPLAY),
        "swap-modules": wrong(honest, at_top=SWAP_MODULES),
        "forged-reports": wrong(honest, at_top=FORGED_REPORTS),
        "hunt-expected": wrong(honest, in_add=HUNT),
        "forge-in-add": wrong(honest, in_add="import json\n" + FORGE_IN_ADD),
        "report-bomb": wrong(honest, in_add=REPORT_BOMB),
        "all-patches": wrong(honest, at_top="\n".join([PATCH_NUMPY, PATCH_MATH, PATCH_BUILTINS, AGREEING_CHECK])),
    }
    for name, send in LEAKS.items():
        cases[name] = wrong(honest, in_add=READ_HIDDEN + send)
    return cases


@pytest.fixture(scope="module")
def graded(course_copy):
    scratch, module, honest, _ = course_copy
    cases = {"honest": honest, "wrong": wrong(honest), **attackers(honest)}
    for student, notebook in cases.items():
        demo.submit(scratch, module, student, notebook)
    outcomes = {o.student: o for o in grading.autograde(scratch, module, sorted(cases), LIMITS, workers=2)}
    results = {s: json.loads((scratch / "course" / "results" / module.slug / f"{s}.json").read_text()) for s in cases}
    feedback.write(scratch, module)
    texts = {s: (scratch / "course" / "feedback" / s / module.slug / f"{module.slug}.md").read_text() for s in cases}
    yield {"scratch": scratch, "module": module, "honest": honest, "cases": cases, "outcomes": outcomes, "results": results, "feedback": texts}


def test_the_wrong_answer_fails_and_the_honest_one_passes(graded):
    assert graded["outcomes"]["honest"].score == 100
    assert graded["outcomes"]["wrong"].score < 100, "the hidden checks must catch add returning zeros"


def test_no_attack_scores_more_than_the_same_wrong_answer(graded):
    baseline = graded["outcomes"]["wrong"].score
    higher = {s: o.score for s, o in graded["outcomes"].items() if s not in ("honest", "wrong") and o.score > baseline}
    assert higher == {}, f"attacks that gained points over the plain wrong answer ({baseline}): {higher}"
    assert not [o.student for o in graded["outcomes"].values() if o.status != "graded"]


def test_patched_comparisons_pass_visible_tests_but_not_hidden_checks(graded):
    """The issue's attack still fools the visible asserts (they run in the student's process); the trusted
    comparison is what fails the cell, and the message it shows is the instructor's."""
    cell = next(c for c in graded["results"]["patch-numpy"]["cells"] if c["grade_id"] == "test-arithmetic")
    assert cell["score"] == 0 and cell["message"].startswith("hidden check failed: "), cell


def _decodings(text):
    """`text` and what may hide in it: every base64 or hex token decoded, and the whole reversed."""
    yield text
    yield text[::-1]
    for token in re.findall(r"[A-Za-z0-9+/=]{16,}", text):
        for decode in (lambda t: base64.b64decode(t + "=" * (-len(t) % 4)), bytes.fromhex):
            try:
                yield decode(token).decode("utf-8", "replace")
            except (ValueError, binascii.Error):
                pass


def test_no_hidden_check_line_reaches_anything_a_student_sees(graded):
    hidden = {line.strip() for _, block in checks.hidden_blocks(graded["honest"]) for line in block.splitlines()
              if len(line.strip()) >= 12}
    assert hidden
    for student, text in graded["feedback"].items():
        result = graded["results"][student]
        seen = "\n".join([text, *result["problems"], *(c["message"] for c in result["cells"])])
        leaked = {line for decoded in _decodings(seen) for line in hidden if line in decoded}
        assert leaked == set(), f"{student}: {sorted(leaked)[:3]}"


def test_a_failed_hidden_check_says_only_the_instructors_message(graded):
    messages = {c["message"] for r in graded["results"].values() for c in r["cells"] if c["message"].startswith("hidden")}
    reference = {f"hidden check failed: {e['message']}" for r in grading_records(graded).values() for e in r}
    assert messages and messages <= reference | {"hidden checks failed: they did not finish",
                                                "hidden checks failed: the checks reported more values than they make",
                                                "hidden checks not run"}


def grading_records(graded):
    from tito.worker import reference_checks
    return reference_checks(graded["scratch"], graded["module"])  # cached by the batch


@pytest.mark.parametrize("student", ["wrong", "patch-numpy", "silent-check"])
def test_tito_test_and_the_grader_agree_on_every_visible_test(graded, student, tmp_path):
    """`tito test` runs the visible tests against the student's export exactly as the grader does: the same
    cells pass (the grader may still fail a cell on its hidden checks)."""
    notebook = graded["cases"][student]
    package = grading.grading_copy(graded["scratch"], graded["module"], notebook, tmp_path / "package")
    _, results = selftest.run(package, graded["module"], notebook)
    by_tito_test = {r.grade_id: r.passed for r in results}
    by_grader = {c["grade_id"]: c["score"] > 0 or c["message"].startswith("hidden check")
                 for c in graded["results"][student]["cells"]}
    assert by_tito_test == by_grader
