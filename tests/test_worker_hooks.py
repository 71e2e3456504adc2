"""The grading worker drives nbclient only through the hooks the pinned versions document, and keeps no
state between submissions: an upgrade that changes a hook fails here instead of grading wrongly."""
import inspect
import re
import tomllib
from pathlib import Path

import nbclient
import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert.preprocessors import ExecutePreprocessor
from nbgrader.preprocessors import Execute

from tito import worker
from tito.worker import SandboxedExecute

ROOT = Path(__file__).resolve().parents[1]


def pinned(name):
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = [re.split(r"==", spec)[1] for spec in extras["dev"] if re.match(rf"{name}==", spec)]
    assert pins, f"{name} is not pinned in pyproject.toml's dev extra"
    return pins[0]


def parameters(function):
    return list(inspect.signature(function).parameters)


def test_nbclient_is_the_pinned_version_with_the_hooks_the_worker_uses():
    assert nbclient.__version__ == pinned("nbclient"), "re-check tito/worker.py against the new nbclient, then re-pin"
    # execute_cell is run_sync(async_execute_cell)
    assert parameters(NotebookClient.async_execute_cell) == ["self", "cell", "cell_index", "execution_count", "store_history"]
    assert parameters(NotebookClient.output) == ["self", "outs", "msg", "display_id", "cell_index"]
    assert parameters(ExecutePreprocessor.preprocess) == ["self", "nb", "resources", "km"]
    assert parameters(ExecutePreprocessor.preprocess_cell) == ["self", "cell", "resources", "index"]
    for trait in ("timeout", "error_on_timeout", "shutdown_kernel", "allow_errors", "interrupt_on_timeout"):
        assert SandboxedExecute.class_traits().get(trait) is not None, trait


def test_no_mutable_state_at_module_or_class_level():
    machinery = set(vars(Execute))  # what traitlets' metaclass puts on every class
    shared = lambda namespace: sorted(k for k, v in namespace.items() if not k.startswith("__") and k not in machinery
                                      and isinstance(v, (list, dict, set, bytearray)))
    assert shared(vars(worker)) == [] and shared(vars(SandboxedExecute)) == []


def notebook(*sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def run(nb, **traits):
    executor = SandboxedExecute(kernel_name="python3", timeout=traits.pop("timeout", 20), **traits)
    executor.preprocess(nb, {"metadata": {"path": str(ROOT)}})
    return worker.problems_of(nb)


@pytest.mark.slow
def test_a_dead_kernel_is_restarted_with_its_state_rebuilt_and_problems_stay_with_their_notebook():
    crashing = notebook("x = 41", "import os\nos._exit(1)", "print(x + 1)")
    problems = run(crashing)
    assert "".join(o.get("text", "") for o in crashing.cells[2].outputs).strip() == "42", crashing.cells[2].outputs
    assert crashing.cells[1].outputs[-1]["ename"] == "KernelDied"
    assert len(problems) == 1 and "kernel died" in problems[0]
    clean = notebook("print('fine')")
    assert run(clean) == [], "a problem of another submission leaked into this one"


@pytest.mark.slow
def test_cells_left_when_the_time_is_up_are_marked_not_run():
    slow = notebook("import time\ntime.sleep(30)", "print('never')")
    problems = run(slow, timeout=2, total_timeout=3)
    assert slow.cells[1].outputs[0]["ename"] == "NotRun"
    assert any("not run" in p for p in problems), problems
