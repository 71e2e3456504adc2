"""Instructor flows that build the course: export the package, check it, make student releases."""
import json

from tito import nbdev_ops
from tito.errors import TitoError
from tito.nbgrader_ops import error_lines, run_nbgrader
from tito.notebooks import HIDDEN_BEGIN, SOLUTION_BEGIN, structure_problems
from tito.project import list_modules, read_notebook

LEAKS = (SOLUTION_BEGIN, "### END SOLUTION", HIDDEN_BEGIN, "### END HIDDEN TESTS")


def lint(root):
    """Structural problems in every source notebook."""
    problems = []
    for module in list_modules(root):
        problems += structure_problems(read_notebook(module.notebook), module.slug)
    return problems


def build(root, check_only=False):
    """Export `tinytorch/` from the notebooks (after cleaning them), or only check that both are up to date."""
    problems = lint(root)
    if problems:
        raise TitoError("notebook structure: " + "; ".join(problems))
    if not check_only:
        nbdev_ops.run_nbdev("nbdev_clean", root)
        nbdev_ops.export(root)
    problems = nbdev_ops.check(root)
    if problems:
        raise TitoError("; ".join(problems))
    return list_modules(root)


def make_exchange(root):
    """nbgrader's exchange (nbgrader_config.py) for Release/Fetch/Submit/Collect: anyone on the machine may add
    files, only their owner may remove them (mode 1777, as /tmp)."""
    exchange = root / "course" / "exchange"
    if not exchange.is_dir():
        exchange.mkdir(parents=True)
        exchange.chmod(0o1777)


def release(root, modules):
    """Generate the student release of each module and prove it leaks no solution or hidden test; then run the
    reference solution's hidden checks, so that one failing on the reference is found now, not when grading."""
    from tito.worker import reference_checks  # imports nbgrader: only when releasing

    make_exchange(root)
    released = []
    for module in modules:
        result = run_nbgrader(root, "generate_assignment", module.slug, "--force")
        notebook = root / "course" / "release" / module.slug / f"{module.slug}.ipynb"
        if error_lines(result) or not notebook.is_file():
            detail = (error_lines(result) or (result.stderr or "no output").splitlines())[-1]
            raise TitoError(f"release of {module.slug} failed: {detail}")
        text = json.dumps(read_notebook(notebook))
        leaked = [marker for marker in LEAKS if marker in text]
        if leaked:
            raise TitoError(f"release of {module.slug} still contains {leaked}: not released safely")
        reference_checks(root, module)
        released.append(notebook)
    return released
