"""Feedback for students: each graded test's pass or fail and its message, never the test's source.

nbgrader's own feedback is the autograded notebook rendered as HTML, hidden tests and all, so it is
not used. The messages come from the worker's result (tito/worker.py): a visible test's last error, cut to
one short line, or a failed hidden check's own message; nothing the kernel printed while hidden checks ran.
"""
from tito.gradebook import load_results, write_atomically


def md_cell(text):
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(result):
    """One student's feedback for one module, as Markdown."""
    cells = result["cells"]
    score, total = sum(c["score"] for c in cells), sum(c["max_score"] for c in cells)
    lines = [f"# {result['module']}: feedback for {result['student']}", "", f"**Score: {score:g} / {total:g}**", "",
             "| test | points | result | message |", "|---|---|---|---|"]
    for c in cells:
        verdict = "pass" if c["score"] == c["max_score"] else "FAIL"
        lines.append(f"| {md_cell(c['grade_id'])} | {c['score']:g}/{c['max_score']:g} | {verdict} | {md_cell(c['message'])} |")
    if result.get("problems"):
        lines += ["", "## Notes from the grader", ""] + [f"- {p}" for p in result["problems"]]
    return "\n".join(lines) + "\n"


def write(root, module, students=None):
    """Write `course/feedback/<student>/<module>/<module>.md` for every graded submission; returns the paths."""
    written = []
    for result in load_results(root, module.slug):
        if students and result["student"] not in students:
            continue
        path = root / "course" / "feedback" / result["student"] / module.slug / f"{module.slug}.md"
        write_atomically(path, render(result))
        written.append(path)
    return written
