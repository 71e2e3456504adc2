"""A module's grading report for instructors: score distribution, the tests most often failed, the problems.

Written from the stored results (`course/results/<module>/`) to `course/reports/<module>.md` and a PNG
histogram beside it, both atomically.
"""
import io
import statistics
from collections import Counter

from tito.errors import TitoError
from tito.feedback import md_cell
from tito.gradebook import load_results, write_atomically

BINS = 10


def _bins(total):
    """(low, high) score ranges: ten equal ranges of the maximum, the last one closed."""
    width = total / BINS
    return [(i * width, (i + 1) * width) for i in range(BINS)]


def _count(scores, low, high, last):
    return sum(1 for s in scores if low <= s < high or (last and s == high))


def histogram_figure(scores, total, title):
    """The score histogram (a matplotlib Figure, no display needed); submissions are counted in whole numbers."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6, 3.5))
    axes = figure.subplots()
    axes.hist(scores, bins=[low for low, _ in _bins(total)] + [total], edgecolor="black")
    axes.set(title=title, xlabel=f"score (of {total:g})", ylabel="submissions", xlim=(0, total))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def histogram_png(scores, total, title):
    """The score histogram as PNG bytes."""
    figure = histogram_figure(scores, total, title)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def render(module, results):
    """The report as Markdown."""
    scores = sorted(sum(c["score"] for c in r["cells"]) for r in results)
    total = sum(c["max_score"] for c in results[0]["cells"])
    lines = [f"# {module}: grading report", "",
             f"{len(results)} submission{'' if len(results) == 1 else 's'}; mean {statistics.mean(scores):.1f}, median {statistics.median(scores):g}, "
             f"min {scores[0]:g}, max {scores[-1]:g} (of {total:g}).", "",
             "## Score distribution", "", f"![score histogram]({module}.png)", "",
             "| score | submissions |", "|---|---|"]
    bins = _bins(total)
    for i, (low, high) in enumerate(bins):
        last = i == len(bins) - 1
        lines.append(f"| {low:g} to {high:g}{'' if last else ' (excl.)'} | {_count(scores, low, high, last)} |")

    failed, messages, points = Counter(), {}, {}
    for result in results:
        for c in result["cells"]:
            points[c["grade_id"]] = c["max_score"]
            if c["score"] < c["max_score"]:
                failed[c["grade_id"]] += 1
                messages.setdefault(c["grade_id"], Counter())[c["message"]] += 1
    lines += ["", "## Tests most often failed", "", "| test | points | failed | share | most common message |",
              "|---|---|---|---|---|"]
    for grade_id, count in failed.most_common():
        message = messages[grade_id].most_common(1)[0][0]
        lines.append(f"| {md_cell(grade_id)} | {points[grade_id]:g} | {count} | {count / len(results):.0%} | {md_cell(message)} |")

    troubled = [r for r in results if r.get("problems")]
    if troubled:
        lines += ["", "## Submissions with problems", "", "| student | status | problems |", "|---|---|---|"]
        for r in troubled:
            lines.append(f"| {md_cell(r['student'])} | {r['status']} | {md_cell('; '.join(r['problems']))} |")
    return "\n".join(lines) + "\n"


def write(root, module):
    """Write `course/reports/<module>.md` and `.png`; returns both paths."""
    results = load_results(root, module.slug)
    if not results:
        raise TitoError(f"no graded submissions of {module.slug}: run `tito autograde {module.number:02d}` first")
    folder = root / "course" / "reports"
    scores = [sum(c["score"] for c in r["cells"]) for r in results]
    total = sum(c["max_score"] for c in results[0]["cells"])
    png = write_atomically(folder / f"{module.slug}.png", histogram_png(scores, total, f"{module.slug} scores"))
    markdown = write_atomically(folder / f"{module.slug}.md", render(module.slug, results))
    return markdown, png
