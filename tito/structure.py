"""Structure checks of a submission against its source notebook, by grade_id, before anything runs.

Students delete, duplicate and retype cells, and tools strip metadata (`nbdev_clean` without the
nbgrader keys). Left alone, nbgrader scores a deleted test cell 0 without a word, and a notebook
without metadata 0 in every cell. So the copy that is graded is repaired first and every repair is
reported; the submitted file itself is never changed.
"""
import copy
import re
import uuid
from collections import Counter

import nbformat
from nbformat.validator import normalize

from tito.errors import TitoError
from tito.notebooks import nbgrader, source

HIDDEN_BLOCK = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.M | re.S)


def visible_text(text):
    """A test cell as the release shows it: the source without its hidden-test blocks."""
    return HIDDEN_BLOCK.sub("", text).strip()


def _role(meta):
    return "graded test" if meta.get("grade") else "solution" if meta.get("solution") else "locked"


def validated(notebook_json, label):
    """The notebook as nbformat 4 accepts it, or a TitoError saying why it is refused."""
    try:
        _, repaired = normalize(copy.deepcopy(notebook_json), strip_invalid_metadata=True)
        notebook = nbformat.from_dict(repaired)
        nbformat.validate(notebook)
    except (nbformat.ValidationError, AttributeError, TypeError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TitoError(f"{label}: not a valid Jupyter notebook ({first})") from None
    return notebook


def _restore_metadata(cells, source_cells):
    """Give cells that lost their nbgrader metadata the source's: matched by cell id, else locked cells by
    their visible text, else a solution cell by its place (the code cell just before its test)."""
    by_cell_id = {c.get("id"): c for c in source_cells}
    locked_by_text = {visible_text(source(c)): c for c in source_cells if nbgrader(c).get("locked")}
    taken = {nbgrader(c).get("grade_id") for c in cells}
    restored = 0

    def give(cell, origin):
        nonlocal restored
        if origin and nbgrader(origin)["grade_id"] not in taken and not nbgrader(cell):
            cell.setdefault("metadata", {})["nbgrader"] = copy.deepcopy(nbgrader(origin))
            taken.add(nbgrader(origin)["grade_id"])
            restored += 1

    for cell in cells:
        give(cell, by_cell_id.get(cell.get("id")) or locked_by_text.get(visible_text(source(cell))))
    code = [c for c in cells if c.cell_type == "code"]
    position = {nbgrader(c).get("grade_id"): i for i, c in enumerate(code) if nbgrader(c)}
    for before, after in zip(source_cells, source_cells[1:]):
        if nbgrader(before).get("solution") and nbgrader(after).get("grade_id") in position:
            index = position[nbgrader(after)["grade_id"]]
            if index > 0:
                give(code[index - 1], before)
    return restored


def check(submitted_json, source_json, label):
    """(notebook to grade, problems): the submission repaired against the source, and what was wrong with it."""
    notebook = validated(submitted_json, label)
    cells = notebook.cells
    source_cells = [c for c in source_json["cells"] if nbgrader(c).get("grade_id")]
    problems = []

    stripped = sum(1 for c in cells if not nbgrader(c))
    restored = _restore_metadata(cells, source_cells)
    if restored:
        problems.append(f"nbgrader metadata was missing from {restored} cell(s) (cleaned without the nbgrader "
                        "keys?); graded with the grade_ids of the source, matched by cell id, text or place")
    elif stripped == len(cells) and cells:
        problems.append("no cell carries nbgrader metadata and none matches the source; graded from the source's cells")

    counts = Counter(nbgrader(c).get("grade_id") for c in cells if nbgrader(c).get("grade_id"))
    for grade_id, count in sorted(counts.items()):
        if count > 1:
            problems.append(f"cell '{grade_id}' appears {count} times; only the last copy is graded")
            for cell in [c for c in cells if nbgrader(c).get("grade_id") == grade_id][:-1]:
                del cell.metadata["nbgrader"]

    expected = {nbgrader(c)["grade_id"]: c for c in source_cells}
    for index, cell in enumerate(cells):
        origin = expected.get(nbgrader(cell).get("grade_id"))
        if origin and cell.cell_type != origin["cell_type"]:
            problems.append(f"cell '{nbgrader(cell)['grade_id']}' was changed from {origin['cell_type']} "
                            f"to {cell.cell_type}; graded as {origin['cell_type']}")
            cells[index] = _as_type(cell, origin["cell_type"])

    _restore_missing(notebook, source_cells, problems)
    return notebook, problems


def _as_type(cell, cell_type):
    maker = nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell
    made = maker(source(cell), metadata=cell.get("metadata", {}))
    made.id = cell.get("id") or made.id
    return made


def _restore_missing(notebook, source_cells, problems):
    """Put deleted graded and locked cells back after the nearest source cell that is still there."""
    cells = notebook.cells
    present = {nbgrader(c)["grade_id"]: c for c in cells if nbgrader(c).get("grade_id")}
    used_ids = {c.get("id") for c in cells}
    after = None
    for origin in source_cells:
        meta = nbgrader(origin)
        if meta["grade_id"] in present:
            after = present[meta["grade_id"]]
            continue
        if meta.get("solution") and not meta.get("locked"):
            problems.append(f"solution cell '{meta['grade_id']}' is missing; its tests cannot pass")
            continue
        cell = _as_type(nbformat.from_dict(copy.deepcopy(origin)), origin["cell_type"])
        if cell.id in used_ids:
            cell.id = uuid.uuid4().hex[:12]
        used_ids.add(cell.id)
        position = next(i for i, c in enumerate(cells) if c is after) + 1 if after is not None else 0
        cells.insert(position, cell)
        after = cell
        problems.append(f"{_role(meta)} cell '{meta['grade_id']}' was deleted; restored from the source")
