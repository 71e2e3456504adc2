"""Hidden checks: expected values and their comparison stay in the grader's process, never in the kernel.

An instructor writes a graded cell's hidden checks in the source notebook, inside its hidden-test block,
as one function that reports values through `check` (see CONTRIBUTING.md):

    ### BEGIN HIDDEN TESTS
    def hidden_checks(check):
        check("matmul of a (2, 3) and a (3, 4) matrix", matmul(Tensor(A), Tensor(B)))
    ### END HIDDEN TESTS

Run inline, the block only defines a function. When grading, the kernel first runs every cell with its
hidden block removed (so no hidden line is in the kernel while visible tests produce the messages a
student sees), then each cell's hidden checks, whose `check` sends plain data out (tito/check_kernel.py).
The same run on the reference notebook gives the expected values, cached in `course/checks/`. The
grader decodes what the submission sent (plain data only, size-capped) and compares it with the
reference's values using the reference's tolerances; a check's feedback is its name, points, pass or
fail and the message the instructor wrote, never anything the kernel produced while the check ran.
"""
import base64
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from tito import structure
from tito.errors import TitoError
from tito.notebooks import nbgrader, source

KERNEL_CODE = (Path(__file__).parent / "check_kernel.py").read_text()
MIME = "application/x-tito-check+json"
MAX_REPORT_BYTES = 1_000_000  # one check's report; larger ones fail
DTYPES = {np.dtype(t).str for t in (bool, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                                    np.uint64, np.float16, np.float32, np.float64)}
BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


class Malformed(ValueError):
    """A report that is not the plain data check_kernel.py sends."""


def hidden_blocks(notebook):
    """[(grade_id, code)] of every graded cell with a hidden-test block, the markers removed, in order."""
    found = []
    for cell in notebook["cells"]:
        meta = nbgrader(cell)
        blocks = structure.HIDDEN_BLOCK.findall(source(cell)) if meta.get("grade") else []
        if blocks:
            code = "\n".join(line for block in blocks for line in block.splitlines() if line.strip() not in (BEGIN, END))
            found.append((meta["grade_id"], code))
    return found


def kernel_code(block):
    """What the kernel runs for one cell's hidden checks: the reporter, in a namespace of its own, then the block."""
    return (f"_tito_checks = {{}}\nexec({KERNEL_CODE!r}, _tito_checks)\n{block}\n"
            "hidden_checks(_tito_checks['check'])\ndel _tito_checks, hidden_checks")


def reports(outputs):
    """The check payloads (JSON text) among a check run's outputs, in order."""
    return [o["data"][MIME] for o in outputs if o.get("output_type") == "display_data" and MIME in o.get("data", {})]


def decode(text):
    """A report's value as Python data (arrays rebuilt), or Malformed."""
    if not isinstance(text, str) or len(text) > MAX_REPORT_BYTES:
        raise Malformed("missing or too large")
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: a report nested deeper than the parser goes
        raise Malformed("not JSON") from None
    if not isinstance(payload, dict) or "value" not in payload:
        raise Malformed("no value")
    return _value(payload["value"])


def _value(plain, depth=0):
    if depth > 9:
        raise Malformed("nested too deeply")
    if plain is None or isinstance(plain, (bool, int, float, str)):
        return plain
    if not isinstance(plain, dict) or len(plain) not in (1, 2, 3):
        raise Malformed("unknown value")
    if set(plain) == {"list"} and isinstance(plain["list"], list):
        return [_value(v, depth + 1) for v in plain["list"]]
    if set(plain) == {"tuple"} and isinstance(plain["tuple"], list):
        return tuple(_value(v, depth + 1) for v in plain["tuple"])
    if set(plain) == {"dict"} and isinstance(plain["dict"], dict):
        return {str(k): _value(v, depth + 1) for k, v in plain["dict"].items()}
    if set(plain) == {"dtype"} and plain["dtype"] in DTYPES:
        return np.dtype(plain["dtype"])
    if set(plain) == {"object", "value"} and isinstance(plain["object"], str):
        return Reported(plain["object"], _value(plain["value"], depth + 1))
    if set(plain) == {"array", "dtype", "shape"} and plain["dtype"] in DTYPES and isinstance(plain["shape"], list):
        shape = tuple(plain["shape"])
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            raise Malformed("bad shape")
        try:
            data = np.frombuffer(base64.b64decode(plain["array"], validate=True), dtype=plain["dtype"]).reshape(shape)
        except (ValueError, TypeError):
            raise Malformed("array data does not match its shape") from None
        return data.item() if data.ndim == 0 else data  # a 0-d array and a scalar are the same value
    raise Malformed("unknown value")


class Reported(tuple):
    """An object that reported its `.data` array (a Tensor, a Parameter): its class name and the array."""

    def __new__(cls, kind, value):
        return super().__new__(cls, (kind, value))


def same(expected, got, rtol, atol):
    """Whether `got` (what a submission reported) matches the reference's `expected`: structure, types, shapes
    and classes exactly; numbers within the reference's tolerances."""
    if isinstance(expected, Reported):
        return isinstance(got, Reported) and expected[0] == got[0] and same(expected[1], got[1], rtol, atol)
    if isinstance(expected, np.ndarray):
        if not isinstance(got, np.ndarray) or got.shape != expected.shape:
            return False
        if expected.dtype.kind == "b" or got.dtype.kind == "b":
            return got.dtype.kind == expected.dtype.kind and bool(np.array_equal(got, expected))
        return bool(np.allclose(got.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True))
    if isinstance(expected, (list, tuple)):
        return (type(got) is type(expected) and len(got) == len(expected)
                and all(same(e, g, rtol, atol) for e, g in zip(expected, got)))
    if isinstance(expected, dict):
        return (isinstance(got, dict) and got.keys() == expected.keys()
                and all(same(expected[k], got[k], rtol, atol) for k in expected))
    if isinstance(expected, bool) or expected is None or isinstance(expected, (str, np.dtype)):
        return type(got) is type(expected) and got == expected
    if isinstance(expected, (int, float)):
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return False
        if math.isnan(expected) or math.isnan(got):
            return math.isnan(expected) and math.isnan(got)
        return math.isclose(got, expected, rel_tol=rtol, abs_tol=atol) or got == expected
    return False


def reference_record(outputs):
    """The expected values of one cell's checks, from the reference run's outputs: message, value, tolerances."""
    record = []
    for text in reports(outputs):
        payload = json.loads(text)
        record.append({k: payload[k] for k in ("message", "value", "rtol", "atol")})
    return record


def verdict(record, outputs, error):
    """Did one cell's hidden checks pass? (passed, message): the message of the first check that failed, as the
    instructor wrote it; never text from the kernel. `error` is true when the run raised or did not finish."""
    got = reports(outputs)
    for index, expected in enumerate(record):
        if index >= len(got):
            return False, f"hidden check failed: {expected['message']}"
        try:
            value = decode(got[index])
        except Malformed:
            return False, f"hidden check failed: {expected['message']}"
        if not same(_value(expected["value"]), value, expected["rtol"], expected["atol"]):
            return False, f"hidden check failed: {expected['message']}"
    if len(got) != len(record):
        return False, "hidden checks failed: the checks reported more values than they make"
    if error:
        return False, "hidden checks failed: they did not finish"
    return True, ""


def fingerprint(root, module):
    """What the expected values depend on: the source notebook, the reporter and the reference package."""
    digest = hashlib.sha256(module.notebook.read_bytes() + KERNEL_CODE.encode())
    for path in sorted((root / "tinytorch").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cached(root, module):
    """The cached expected values of `module` if they match its sources now, else None."""
    path = root / "course" / "checks" / f"{module.slug}.json"
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except ValueError:
        return None
    return stored["cells"] if stored.get("fingerprint") == fingerprint(root, module) else None


def store(root, module, records):
    """Cache the reference's reports of `module` in `course/checks/` (instructor-only, like the gradebook)."""
    from tito.gradebook import write_atomically
    path = root / "course" / "checks" / f"{module.slug}.json"
    write_atomically(path, json.dumps({"fingerprint": fingerprint(root, module), "cells": records}))
    path.chmod(0o600)  # the expected values are the answer key's: not for other users of the machine


def require_all(blocks, records, module):
    """Every hidden block must report at least one value on the reference: a block reporting nothing would pass
    any submission."""
    empty = [grade_id for grade_id, _ in blocks if not records.get(grade_id)]
    if empty:
        raise TitoError(f"{module.slug}: the hidden checks of {', '.join(empty)} report nothing on the reference "
                        "solution; write them as `def hidden_checks(check): check(message, value) ...`")
