"""`tito test NN`: run a module's test cells against the student's *exported* package.

The notebook is executed in a fresh kernel with every `#| export` cell replaced by the names of the
exported module, so the tests exercise exactly the code that later modules and milestones will import.
Every test cell runs even after a failure, and each graded cell is reported with its message.
"""
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tito import kernels
from tito.notebooks import EXPORT_FLAG, nbgrader, source
from tito.project import export_targets

WHERE_IS_TINYTORCH = "import tinytorch as _tt\nprint(_tt.__file__)"


@dataclass(frozen=True)
class CellResult:
    grade_id: str
    points: float
    passed: bool
    message: str


def _bind_exports(targets):
    lines = ["import importlib as _importlib"]
    for target in targets:
        lines.append(f"_exported = _importlib.import_module('tinytorch.{target}')")
        lines.append("globals().update({k: v for k, v in vars(_exported).items() if not k.startswith('__')})")
    return "\n".join(lines)


def testing_notebook(notebook_json):
    """The notebook with its exported cells swapped for imports of the exported package."""
    notebook = nbformat.reads(json.dumps(notebook_json), as_version=4)  # joins list-of-lines sources
    cells, bound = [nbformat.v4.new_code_cell(WHERE_IS_TINYTORCH)], False
    for cell in notebook.cells:
        if cell.cell_type == "code" and EXPORT_FLAG.search(source(cell)):
            if not bound:
                cells.append(nbformat.v4.new_code_cell(_bind_exports(export_targets(notebook_json))))
                bound = True
            continue
        cells.append(cell)
    notebook.cells = cells
    return notebook


def _failure(cell):
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output['ename']}: {output['evalue']}".splitlines()[0][:300]
    return None


def run(root, module, notebook_json, timeout=120):
    """Execute the module's tests against `root`'s package; returns (tinytorch path seen, [CellResult])."""
    notebook = testing_notebook(notebook_json)
    env = {**os.environ, "PYTHONPATH": str(root), "TINYTORCH_SMALL": "1"}
    with tempfile.TemporaryDirectory(prefix="tito-test-") as scratch:
        sockets = kernels.socket_folder(Path(scratch) / "run")
        try:
            client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=True,
                                    resources={"metadata": {"path": str(module.folder)}},
                                    config=kernels.ipc_config(sockets))
            client.execute(env=env)
        finally:
            shutil.rmtree(sockets, ignore_errors=True)
    first = notebook.cells[0].get("outputs", [])
    seen = "".join(o.get("text", "") for o in first).strip() or _failure(notebook.cells[0])
    results = []
    for cell in notebook.cells:
        meta = nbgrader(cell)
        if meta.get("grade"):
            message = _failure(cell)
            results.append(CellResult(meta["grade_id"], meta.get("points", 0), message is None, message or ""))
    return seen, results


def save(root, module, results):
    """Remember the latest results for `tito status`."""
    path = Path(root) / ".tito" / "results.json"
    path.parent.mkdir(exist_ok=True)
    saved = json.loads(path.read_text()) if path.is_file() else {}
    saved[module.slug] = {"earned": sum(r.points for r in results if r.passed), "total": sum(r.points for r in results)}
    path.write_text(json.dumps(saved, indent=1))


def load(root):
    path = Path(root) / ".tito" / "results.json"
    return json.loads(path.read_text()) if path.is_file() else {}
