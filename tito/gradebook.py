"""nbgrader's gradebook: storing graded results (this process is its only writer), reading scores, atomic exports."""
import csv
import io
import json
import os
import sqlite3
import tempfile
import warnings
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


def _course_id(root):
    """The course the gradebook's assignments belong to (nbgrader adds a course row for any other id)."""
    with sqlite3.connect(f"file:{root / 'course' / 'gradebook.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT course_id FROM assignment LIMIT 1").fetchone()
    return row[0] if row else "default_course"


def store(root, course_id, result):
    """Write one graded submission into the gradebook, its grades in a single transaction.

    Cells that did not run carry score 0 in `result`; a grade an instructor set by hand is kept and
    flagged for review, as nbgrader itself does.
    """
    from nbgrader.api import Gradebook  # imported late: nbgrader takes a second to import
    from sqlalchemy.exc import SAWarning

    scores = {c["grade_id"]: c["score"] for c in result["cells"]}
    with warnings.catch_warnings(), Gradebook(_db_url(root), course_id) as gradebook:
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's harmless autoflush warnings on new submissions
        gradebook.update_or_create_student(result["student"])
        extra = {"timestamp": result["timestamp"]} if result.get("timestamp") else {}
        submission = gradebook.update_or_create_submission(result["module"], result["student"], **extra)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = scores.get(grade.name, 0.0)
                grade.needs_manual_grade = grade.manual_score is not None
            for comment in notebook.comments:
                comment.auto_comment = result.get("comments", {}).get(comment.name)
            notebook.late_submission_penalty = result.get("late_penalty")
        gradebook.db.commit()


def scores(root, modules=None):
    """Every autograded submission's score (per cell too), read from the gradebook."""
    from nbgrader.api import Gradebook  # imported late: nbgrader takes a second to import

    if not (root / "course" / "gradebook.db").is_file():
        return []
    found = []
    with Gradebook(_db_url(root), _course_id(root)) as gradebook:
        for assignment in gradebook.assignments:
            if modules and assignment.name not in modules:
                continue
            for submission in assignment.submissions:
                cells = tuple(CellScore(g.name, g.score or 0.0, g.max_score)
                              for notebook in submission.notebooks for g in notebook.grades if g.max_score)
                found.append(Score(submission.student.id, assignment.name, sum(c.score for c in cells),
                                   sum(c.max_score for c in cells), cells))
    return sorted(found, key=lambda s: (s.module, s.student))


def _umask():
    """The process's umask (read from /proc, where it can be read without changing it)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def write_atomically(path, content):
    """Write `content` (text or bytes) to `path` through a temporary file and a rename, so a crash never
    leaves half a file. The file gets the permissions the umask gives a new file (mkstemp's are 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as f:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def load_results(root, module_slug):
    """The stored result of every graded submission of a module (`course/results/<module>/<student>.json`)."""
    folder = root / "course" / "results" / module_slug
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def to_csv(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", "module", "score", "max_score"])
    for row in rows:
        writer.writerow([row.student, row.module, f"{row.score:g}", f"{row.max_score:g}"])
    return buffer.getvalue()


def table(rows, modules=()):
    """Students down, modules across (those graded and `modules`): 'score/max' per cell, '-' where nothing was graded."""
    students = sorted({r.student for r in rows})
    modules = sorted({r.module for r in rows} | set(modules))
    lookup = {(r.student, r.module): f"{r.score:g}/{r.max_score:g}" for r in rows}
    widths = [max([len("student")] + [len(s) for s in students])] + [max(len(m), 7) for m in modules]
    lines = ["  ".join(h.ljust(w) for h, w in zip(["student", *modules], widths))]
    lines.append("  ".join("-" * w for w in widths))
    for student in students:
        cells = [student] + [lookup.get((student, m), "-") for m in modules]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    return "\n".join(lines)
