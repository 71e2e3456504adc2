"""Student flows: a working copy from the release, export, self-test, status."""
import shutil
import tempfile
from pathlib import Path

from tito import nbdev_ops, selftest
from tito.errors import TitoError
from tito.gradebook import write_atomically
from tito.notebooks import source
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
    """Export one module of the student's notebooks into their package.

    nbdev writes into a temporary copy of the package; the exported files are compiled there and only
    then replace the student's (with nbdev's symbol index), so a notebook that does not compile names
    its cell and line and leaves the previous export in place, and every later import keeps working.
    """
    notebook = read_notebook(module.notebook)
    targets = [Path(*t.split(".")).with_suffix(".py") for t in export_targets(notebook)]
    with tempfile.TemporaryDirectory(prefix="tito-export-") as scratch:
        copy = Path(scratch)
        shutil.copy2(root / "settings.ini", copy / "settings.ini")
        shutil.copytree(root / "tinytorch", copy / "tinytorch", ignore=shutil.ignore_patterns("__pycache__"))
        relative = module.notebook.relative_to(root)
        (copy / relative).parent.mkdir(parents=True)
        shutil.copy2(module.notebook, copy / relative)
        try:
            nbdev_ops.export(copy, relative)
        except TitoError as failure:
            _refuse_if_broken(root, module, notebook, copy, targets)
            raise TitoError(str(failure).replace(str(copy), str(root))) from None
        _refuse_if_broken(root, module, notebook, copy, targets)
        for name in [*targets, Path("_modidx.py")]:
            if (copy / "tinytorch" / name).is_file():
                write_atomically(root / "tinytorch" / name, (copy / "tinytorch" / name).read_bytes())


def _refuse_if_broken(root, module, notebook, copy, targets):
    """A TitoError naming the cell and line where an exported file of `copy` does not compile."""
    for target in targets:
        path = copy / "tinytorch" / target
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        try:
            compile(text, str(path), "exec")
        except SyntaxError as error:
            cell_id, offset = nbdev_ops.locate(text, error.lineno or 1)
            index = next((i for i, c in enumerate(notebook["cells"]) if c.get("id") == cell_id), None)
            where = f"cell '{cell_id}' (cell {index} of the notebook)" if index is not None else "a cell"
            if index is not None and error.text:  # the line as the student sees it, directives included
                cell_lines = source(notebook["cells"][index]).splitlines()
                offset = next((n + 1 for n, line in enumerate(cell_lines) if line.strip() == error.text.strip()), offset)
            raise TitoError(f"{module.notebook.relative_to(root)}: {where}, line {offset}: {error.msg}; nothing was "
                            f"exported, tinytorch/{target} is unchanged") from None


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
