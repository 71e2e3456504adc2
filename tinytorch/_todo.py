"""What a student's unfinished function raises: which function, in which module, and what to run next.

The nbgrader stub (`nbgrader_config.py`) calls `todo()` in place of every solution region, so an
untouched release still imports and only fails when the unfinished part is called.
"""
import inspect
import os
import re

_MODULE_IN_HEADER = re.compile(r"File to edit: .*modules/(\d\d_\w+)/")
_MODULE_DIR = re.compile(r"^\d\d_\w+$")


class NotImplementedYet(NotImplementedError):
    """A student stub: part of a module that is not written yet."""


def module_of(namespace):
    """The course module whose code runs in `namespace` (a module's globals): the nbdev header of its file,
    else the notebook's folder (a kernel runs in it)."""
    path = namespace.get("__file__")
    if path and os.path.exists(path):
        with open(path) as f:
            match = _MODULE_IN_HEADER.search(f.readline())
        if match:
            return match.group(1)
    folder = os.path.basename(os.getcwd())
    return folder if _MODULE_DIR.match(folder) else None


def todo():
    """Raise NotImplementedYet naming the caller and its module."""
    caller = inspect.currentframe().f_back
    name = caller.f_code.co_qualname
    module = module_of(caller.f_globals)
    if module is None:
        raise NotImplementedYet(f"{name} is not implemented yet: complete it in its module's notebook")
    number = module[:2]
    raise NotImplementedYet(
        f"{name} is not implemented yet: complete it in module {module} "
        f"(modules/{module}/{module}.ipynb), then run `tito export {number}`"
    )
