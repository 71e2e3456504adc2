"""Student flows: a working copy from the release, export, self-test, status."""
import shutil
from pathlib import Path

from tito import nbdev_ops, selftest
from tito.errors import TitoError
from tito.project import export_targets, list_modules, read_notebook

STUB_CALL = "from tinytorch._todo import todo; todo()"
COPIED_FILES = ("settings.ini", "pyproject.toml")
PACKAGE_INFRA = ("__init__.py", "_todo.py", "_measure.py")
STUDENT_README = """# My TinyTorch

My own deep-learning framework, built module by module.

    pip install -e '.[dev]'   # once: my `tinytorch`, `tito`, Jupyter and nbdev
    tito status               # what is done, what is next
    jupyter lab modules/      # work on a module's notebook
    tito export NN            # put my module NN into my tinytorch/
    tito test NN              # run module NN's tests against my exported code
"""


def init(course_root, destination):
    """Create a student's working copy: release notebooks, the same configuration, every module exported."""
    destination = Path(destination).resolve()
    release = course_root / "course" / "release"
    released = sorted(p for p in release.glob("*/*.ipynb")) if release.is_dir() else []
    if not released:
        raise TitoError("no release to copy: run `tito release` first")
    missing = [name for name in (*COPIED_FILES, "tito") if not (course_root / name).exists()]
    if missing:
        raise TitoError(f"{course_root} lacks {', '.join(missing)}: run this in the course repository")
    if destination.exists() and any(destination.iterdir()):
        raise TitoError(f"{destination} exists and is not empty: choose a new folder (nothing was changed)")
    (destination / "tinytorch").mkdir(parents=True)
    for name in COPIED_FILES:
        shutil.copy2(course_root / name, destination / name)
    for name in PACKAGE_INFRA:
        shutil.copy2(course_root / "tinytorch" / name, destination / "tinytorch" / name)
    shutil.copytree(course_root / "tito", destination / "tito", ignore=shutil.ignore_patterns("__pycache__"))
    for notebook in released:
        shutil.copytree(notebook.parent, destination / "modules" / notebook.parent.name)
    (destination / "README.md").write_text(STUDENT_README)
    (destination / ".gitignore").write_text("__pycache__/\n*.egg-info/\n.ipynb_checkpoints/\n.tito/\n")
    nbdev_ops.export(destination)
    return destination


def export(root, module):
    """Export one module of the student's notebooks into their package."""
    read_notebook(module.notebook)
    nbdev_ops.export(root, module.notebook.relative_to(root))


def exported_file(root, module):
    targets = export_targets(read_notebook(module.notebook))
    return root / "tinytorch" / Path(*targets[0].split(".")).with_suffix(".py") if targets else None


def test(root, module):
    """Export, then run the module's tests against the exported package; returns (path seen, results)."""
    export(root, module)
    seen, results = selftest.run(root, module, read_notebook(module.notebook))
    expected = (root / "tinytorch").resolve()
    if not seen or not Path(seen).resolve().is_relative_to(expected):
        raise TitoError(f"the tests imported tinytorch from {seen}, not from {expected}: "
                        "run `pip install -e '.[dev]'` in this folder")
    selftest.save(root, module, results)
    return seen, results


def status(root):
    """(module, stubs left in the exported file, last test result or None) for every module."""
    results = selftest.load(root)
    rows = []
    for module in list_modules(root):
        path = exported_file(root, module)
        stubs = path.read_text().count(STUB_CALL) if path and path.is_file() else None
        rows.append((module, stubs, results.get(module.slug)))
    return rows
