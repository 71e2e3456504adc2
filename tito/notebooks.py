"""Reading course notebooks: their nbgrader cells, and the structural rules every module keeps."""
import re

SOLUTION_BEGIN = "### BEGIN SOLUTION"
HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_CHECKS = "def hidden_checks(check):"  # the one form a hidden block takes (tito/checks.py)
EXPORT_FLAG = re.compile(r"^#\|\s*export\b", re.M)


def source(cell):
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else text


def nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader") or {}


def graded_cells(notebook):
    """(grade_id, points) of every graded test cell, in order."""
    return [(nbgrader(c)["grade_id"], nbgrader(c).get("points", 0)) for c in notebook["cells"] if nbgrader(c).get("grade")]


def structure_problems(notebook, label):
    """What breaks the course's rules in a source notebook: metadata, solution placement, points."""
    problems, ids = [], set()
    for index, cell in enumerate(notebook["cells"]):
        meta, text, where = nbgrader(cell), source(cell), f"{label} cell {index}"
        if meta:
            if meta.get("schema_version") != 3:
                problems.append(f"{where}: nbgrader metadata without schema_version 3")
            if meta.get("grade_id") in ids:
                problems.append(f"{where}: duplicate grade_id {meta.get('grade_id')!r}")
            ids.add(meta.get("grade_id"))
        if SOLUTION_BEGIN in text:
            if not meta.get("solution"):
                problems.append(f"{where}: solution region in a cell without nbgrader solution metadata")
            for line in text.splitlines():
                if line.strip() == SOLUTION_BEGIN and not line.startswith(" "):
                    problems.append(f"{where}: solution region outside a function body (the release would not import)")
        if HIDDEN_BEGIN in text and not meta.get("grade"):
            problems.append(f"{where}: hidden tests in a cell that is not a graded test")
        if meta.get("grade") and cell.get("cell_type") == "code" and HIDDEN_CHECKS not in text:
            problems.append(f"{where}: graded test {meta.get('grade_id')!r} without hidden checks (`{HIDDEN_CHECKS}` "
                            "inside ### BEGIN HIDDEN TESTS; see CONTRIBUTING.md): patched comparisons would pass it")
        if EXPORT_FLAG.search(text) and not (meta.get("solution") or meta.get("locked")):
            problems.append(f"{where}: exported cell that is neither a solution nor locked")
    total = sum(points for _, points in graded_cells(notebook))
    if total != 100:
        problems.append(f"{label}: graded cells total {total} points, expected 100")
    return problems
