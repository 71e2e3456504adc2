"""Where things are: the project root and its numbered modules."""
import json
import re
from dataclasses import dataclass
from pathlib import Path

from tito.errors import TitoError

MODULE_DIR = re.compile(r"^(\d\d)_([a-z0-9_]+)$")
EXPORT_TARGET = re.compile(r"^#\|\s*default_exp\s+(\S+)", re.M)


@dataclass(frozen=True)
class Module:
    """One course module: `modules/NN_name/NN_name.ipynb`."""
    number: int
    slug: str  # e.g. "01_tensor", nbgrader's assignment id
    folder: Path

    @property
    def notebook(self):
        return self.folder / f"{self.slug}.ipynb"

    @property
    def name(self):
        return self.slug[3:]


def find_root(start=None):
    """The nearest folder at or above `start` holding `settings.ini` and `modules/`."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "settings.ini").is_file() and (folder / "modules").is_dir():
            return folder
    raise TitoError(f"no TinyTorch project here: no folder at or above {here} has settings.ini and modules/")


def find_course(start=None):
    """The course repository (the project root holding nbgrader_config.py), for instructor commands."""
    root = find_root(start)
    if not (root / "nbgrader_config.py").is_file():
        raise TitoError("this is a student copy: run instructor commands in the course repository")
    return root


def list_modules(root):
    """Every `modules/NN_name/` folder that holds its notebook, in order."""
    found = []
    for folder in sorted((root / "modules").iterdir()):
        match = MODULE_DIR.match(folder.name)
        if match and (folder / f"{folder.name}.ipynb").is_file():
            found.append(Module(int(match.group(1)), folder.name, folder))
    return found


def resolve(root, names):
    """Modules named by number (`1`, `01`), slug (`01_tensor`) or name (`tensor`); all of them for no names."""
    modules = list_modules(root)
    if not names:
        return modules
    chosen = []
    for name in names:
        matches = [m for m in modules if name in (m.slug, m.name) or (name.isdigit() and int(name) == m.number)]
        if not matches:
            known = ", ".join(m.slug for m in modules) or "none"
            raise TitoError(f"no module '{name}': expected a number or name of one of: {known}")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def export_targets(notebook_json):
    """The package modules a notebook exports to (`core.tensor` -> `tinytorch/core/tensor.py`)."""
    for cell in notebook_json.get("cells", []):
        if cell.get("cell_type") == "code":
            match = EXPORT_TARGET.search("".join(cell.get("source", "")))
            if match:
                return [match.group(1)]
    return []


def read_notebook(path):
    """A notebook's JSON, or a TitoError saying why it cannot be one."""
    path = Path(path)
    if not path.is_file():
        raise TitoError(f"{path}: no such notebook")
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TitoError(f"{path}: not a valid notebook (not JSON: {error}); re-download or restore it") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list) or "nbformat" not in notebook:
        raise TitoError(f"{path}: not a Jupyter notebook (no 'cells' list or 'nbformat')")
    return notebook


def module_of_file(path):
    """The module slug named in an exported file's nbdev header, or None for hand-written files."""
    with open(path, encoding="utf-8") as f:
        match = re.search(r"File to edit: .*modules/(\d\d_\w+)/", f.readline())
    return match.group(1) if match else None
