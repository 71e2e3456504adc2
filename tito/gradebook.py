"""Reading scores out of nbgrader's gradebook, and writing them out atomically."""
import csv
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CellScore:
    grade_id: str
    score: float
    max_score: float


@dataclass(frozen=True)
class Score:
    student: str
    module: str
    score: float
    max_score: float
    cells: tuple


def _db_url(root):
    return "sqlite:///" + str(root / "course" / "gradebook.db")


def scores(root, modules=None):
    """Every autograded submission's score (per cell too), read from the gradebook."""
    from nbgrader.api import Gradebook  # imported late: nbgrader takes a second to import

    if not (root / "course" / "gradebook.db").is_file():
        return []
    found = []
    with Gradebook(_db_url(root)) as gradebook:
        for assignment in gradebook.assignments:
            if modules and assignment.name not in modules:
                continue
            for submission in assignment.submissions:
                cells = tuple(CellScore(g.name, g.score or 0.0, g.max_score)
                              for notebook in submission.notebooks for g in notebook.grades if g.max_score)
                found.append(Score(submission.student.id, assignment.name, sum(c.score for c in cells),
                                   sum(c.max_score for c in cells), cells))
    return sorted(found, key=lambda s: (s.module, s.student))


def write_atomically(path, text):
    """Write `text` to `path` through a temporary file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def to_csv(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", "module", "score", "max_score"])
    for row in rows:
        writer.writerow([row.student, row.module, f"{row.score:g}", f"{row.max_score:g}"])
    return buffer.getvalue()


def table(rows):
    """Students down, modules across: 'score/max' per cell, '-' where nothing was graded."""
    students = sorted({r.student for r in rows})
    modules = sorted({r.module for r in rows})
    lookup = {(r.student, r.module): f"{r.score:g}/{r.max_score:g}" for r in rows}
    widths = [max([len("student")] + [len(s) for s in students])] + [max(len(m), 7) for m in modules]
    lines = ["  ".join(h.ljust(w) for h, w in zip(["student", *modules], widths))]
    lines.append("  ".join("-" * w for w in widths))
    for student in students:
        cells = [student] + [lookup.get((student, m), "-") for m in modules]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    return "\n".join(lines)
