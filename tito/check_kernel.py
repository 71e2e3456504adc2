"""The kernel's half of a hidden check: turn what the student's code computed into plain data and send it out.

Its text is sent to the grading kernel before each cell's hidden checks (the kernel cannot import tito).
`check(message, value, rtol=1e-4, atol=1e-5)` encodes `value` as JSON (numbers, strings, None, lists,
tuples, dicts with string keys, NumPy dtypes and arrays, and objects holding an array in `.data`, such as a
Tensor) and displays it under its own MIME type; `check.raises(message, call, error_type, *words)` reports
whether `call()` raised an `error_type` and which of `words` its message contains. Nothing is compared here: the grader compares what
arrives with what the reference produced, in its own process. A submission may replace this function or
anything it calls; it then sends other data, which cannot match values it did not compute.
"""
import base64 as _tito_base64
import json as _tito_json

import numpy as _tito_np
from IPython.display import display as _tito_display

TITO_CHECK_MIME = "application/x-tito-check+json"
_TITO_ARRAY_KINDS = "biuf"  # bool, signed and unsigned integers, floats: nothing that could carry an object


def _tito_plain(value, depth=0):
    """`value` as JSON-safe plain data, tagged so the grader can rebuild arrays and tell a tuple from a list."""
    if depth > 8:
        raise TypeError("a checked value nests deeper than 8 levels")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, _tito_np.generic):
        return _tito_plain(value.item(), depth)
    if isinstance(value, _tito_np.dtype):
        return {"dtype": value.str}
    if isinstance(value, type) and issubclass(value, _tito_np.generic):
        return {"dtype": _tito_np.dtype(value).str}
    if isinstance(value, (list, tuple)):
        return {"list" if isinstance(value, list) else "tuple": [_tito_plain(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a checked dict must have string keys")
        return {"dict": {k: _tito_plain(v, depth + 1) for k, v in value.items()}}
    if isinstance(value, _tito_np.ndarray):
        if value.dtype.kind not in _TITO_ARRAY_KINDS:
            raise TypeError(f"a checked array must hold numbers, not {value.dtype}")
        data = _tito_np.array(value, order="C")  # a copy, C-ordered; a 0-d array stays 0-d
        return {"array": _tito_base64.b64encode(data.tobytes()).decode(), "dtype": data.dtype.str,
                "shape": list(data.shape)}
    if isinstance(getattr(value, "data", None), _tito_np.ndarray):
        return {"object": type(value).__name__, "value": _tito_plain(value.data, depth + 1)}
    raise TypeError(f"a hidden check can only report plain data, not {type(value).__name__}")


def check(message, value, rtol=1e-4, atol=1e-5):
    """Report one value of a hidden check; `message` says (to the student, if it fails) what was checked."""
    payload = {"message": str(message), "value": _tito_plain(value), "rtol": float(rtol), "atol": float(atol)}
    _tito_display({TITO_CHECK_MIME: _tito_json.dumps(payload)}, raw=True)


def _tito_raises(message, call, error_type, *words):
    """Report whether `call()` raises `error_type` (or a subclass) and which of `words` its message contains."""
    try:
        call()
    except error_type as error:
        check(message, {"raised": True, "mentions": [str(w) in str(error) for w in words]})
    else:
        check(message, {"raised": False, "mentions": []})


check.raises = _tito_raises
