"""The grader's half of hidden checks (tito/checks.py) against the kernel's half (tito/check_kernel.py), in-process."""
import json

import numpy as np
import pytest

from tito import check_kernel, checks
from tito.notebooks import structure_problems


class Tensorish:
    def __init__(self, data):
        self.data = np.asarray(data)


def sent(value, rtol=1e-4, atol=1e-5):
    """The JSON text the kernel's `check` would display for `value`."""
    return json.dumps({"message": "m", "value": check_kernel._tito_plain(value), "rtol": rtol, "atol": atol})


VALUES = [None, True, 3, -2.5, float("nan"), "text", (1, 2.0), [1, [2, "x"]], {"a": (1,), "b": None},
          np.float32, np.dtype("int64"), np.arange(6, dtype=np.int16).reshape(2, 3), np.array([True, False]),
          np.linspace(0, 1, 5, dtype=np.float32), np.zeros((0, 3)), Tensorish([[1.0, 2.0]]), np.int64(7)]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_every_plain_value_survives_the_trip_and_matches_itself(value):
    got = checks.decode(sent(value))
    assert checks.same(checks.decode(sent(value)), got, 1e-4, 1e-5), (value, got)


@pytest.mark.parametrize("expected, got", [
    (np.ones(3), np.ones(4)), (np.ones((2, 2)), np.ones(4)), (np.ones(3), np.ones(3) * 1.01), (np.ones(3), [1, 1, 1]),
    (np.array([True]), np.array([1.0])), ((1, 2), [1, 2]), (1, True), (True, 1), (1.0, "1.0"), (None, 0),
    ({"a": 1}, {"a": 1, "b": 2}), (Tensorish([1.0]), np.array([1.0])), (np.float32, np.float64), (float("nan"), 0.0),
    ("abc", "abd"), ([1.0, 2.0], [1.0]),
])
def test_different_values_do_not_match(expected, got):
    assert not checks.same(checks.decode(sent(expected)), checks.decode(sent(got)), 1e-4, 1e-5)


def test_a_0d_array_and_a_scalar_are_the_same_value():
    assert checks.same(checks.decode(sent(np.array(2.5))), checks.decode(sent(2.5)), 0, 0)
    assert checks.same(checks.decode(sent(np.float32(2.5))), checks.decode(sent(np.array(2.5, dtype=np.float32))), 0, 0)
    assert not checks.same(checks.decode(sent(np.array([2.5]))), checks.decode(sent(2.5)), 0, 0)


def test_tolerances_come_from_the_reference_not_from_the_submission():
    record = [{"message": "close enough?", "value": check_kernel._tito_plain(1.0), "rtol": 1e-6, "atol": 0.0}]
    lenient = sent(1.1, rtol=1.0, atol=1.0)
    assert checks.verdict(record, [{"output_type": "display_data", "data": {checks.MIME: lenient}}], False) == \
        (False, "hidden check failed: close enough?")


@pytest.mark.parametrize("text", [
    "not json", json.dumps([1]), json.dumps({"message": "no value"}),
    json.dumps({"value": {"array": "AAAA", "dtype": "|O", "shape": [1]}}),  # objects never leave the kernel
    json.dumps({"value": {"array": "AAAA", "dtype": "<f8", "shape": [5]}}),  # data and shape disagree
    json.dumps({"value": {"array": "!!", "dtype": "<f8", "shape": [0]}}),
    json.dumps({"value": {"pickle": "gASVAAAAAAAAAAB9lC4="}}),
    json.dumps({"value": {"list": [1], "tuple": [2]}}),
    json.dumps({"value": {"array": "", "dtype": "<f8", "shape": [-1]}}),
    "[" * 100_000, "x" * (checks.MAX_REPORT_BYTES + 1), None,
])
def test_malformed_reports_are_refused_never_executed(text):
    with pytest.raises(checks.Malformed):
        checks.decode(text)


def display(text):
    return {"output_type": "display_data", "data": {checks.MIME: text}}


def test_a_verdict_names_the_first_failing_check_with_the_instructors_message_only():
    record = [{"message": "first", "value": check_kernel._tito_plain(1), "rtol": 0, "atol": 0},
              {"message": "second", "value": check_kernel._tito_plain([1, 2]), "rtol": 0, "atol": 0}]
    assert checks.verdict(record, [display(sent(1)), display(sent([1, 2]))], False) == (True, "")
    assert checks.verdict(record, [display(sent(1)), display(sent([1, 3]))], False) == (False, "hidden check failed: second")
    assert checks.verdict(record, [display(sent(1))], True) == (False, "hidden check failed: second")
    assert checks.verdict(record, [], False) == (False, "hidden check failed: first")
    extra = [display(sent(1)), display(sent([1, 2])), display(sent(0))]
    assert checks.verdict(record, extra, False)[0] is False
    assert checks.verdict(record, [display(sent(1)), display(sent([1, 2]))], True)[0] is False


def test_hidden_blocks_are_found_per_graded_cell_without_their_markers():
    cell = {"cell_type": "code", "metadata": {"nbgrader": {"grade": True, "grade_id": "test-x"}},
            "source": "assert f(1) == 2\n### BEGIN HIDDEN TESTS\ndef hidden_checks(check):\n    check('f(2)', f(2))\n"
                      "### END HIDDEN TESTS\n"}
    assert checks.hidden_blocks({"cells": [cell]}) == [("test-x", "def hidden_checks(check):\n    check('f(2)', f(2))")]


def test_a_graded_cell_with_assert_style_hidden_tests_is_a_structure_problem():
    meta = {"grade": True, "grade_id": "test-x", "points": 100, "schema_version": 3}
    old = {"cell_type": "code", "metadata": {"nbgrader": meta},
           "source": "assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(2) == 3\n### END HIDDEN TESTS\n"}
    assert any("without hidden checks" in p for p in structure_problems({"cells": [old]}, "m"))


def test_the_kernels_reporter_refuses_what_is_not_plain_data():
    for value in (object(), np.array([object()]), {1: 2}, lambda: 0):
        with pytest.raises(TypeError):
            check_kernel._tito_plain(value)
