"""Benchmark: autograding throughput (submissions per minute) for one module, by number of workers.

Builds a scratch copy of the course, releases the module, generates N submissions (honest, half-done
and blank in turn), then grades all of them with each worker count in turn, exactly as
`tito autograde` does: every submission in its own sandboxed worker process, each result stored in
the gradebook by this process as it arrives. Each pass regrades everything (regrading is idempotent),
and each pass checks that every submission was stored with the score of its kind. `--dask` adds a pass
on a local Dask cluster with the largest worker count. Figures go to stdout and to
bench/results/grading_throughput-<time>.json (gitignored).

    python bench/grading_throughput.py                      # 200 submissions of 01, 1 and 2 workers
    python bench/grading_throughput.py --count 20 --workers 2 --dask
"""
import argparse
import json
import os
import platform
import time
from pathlib import Path

from tito import course, demo, gradebook, grading
from tito.project import find_root, read_notebook, resolve

KINDS = ("honest", "half", "blank")


def generate(scratch, module, count):
    """`count` submissions cycling through KINDS; returns {student: kind}."""
    source_nb = read_notebook(module.notebook)
    release_nb = read_notebook(scratch / "course" / "release" / module.slug / f"{module.slug}.ipynb")
    notebooks = {kind: demo.submission(kind, source_nb, release_nb) for kind in KINDS}
    students = {}
    for number in range(count):
        kind = KINDS[number % len(KINDS)]
        student = f"bench-{number:04d}-{kind}"
        demo.submit(scratch, module, student, notebooks[kind])
        students[student] = kind
    return students


def grading_pass(scratch, module, students, limits, workers, executor=None):
    """Grade every submission once; returns seconds taken, after checking what was stored."""
    started = time.perf_counter()
    outcomes = grading.autograde(scratch, module, sorted(students), limits, workers=workers, executor=executor)
    seconds = time.perf_counter() - started
    stored = {s.student: s.score for s in gradebook.scores(scratch, {module.slug})}
    by_kind = {}
    for student, kind in students.items():
        by_kind.setdefault(kind, set()).add(stored.get(student))
    errors = [o.student for o in outcomes if o.status != "graded"]
    assert not errors and all(len(scores) == 1 and None not in scores for scores in by_kind.values()), (errors, by_kind)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="01", help="module number or name (default 01)")
    parser.add_argument("--count", type=int, default=200, help="submissions to generate (default 200)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure (default 1 2)")
    parser.add_argument("--dask", action="store_true", help="also measure on a local Dask cluster")
    args = parser.parse_args()

    root = find_root(Path(__file__).parent)
    scratch = demo.scratch_course(root)
    module = resolve(scratch, [args.module])[0]
    course.release(scratch, [module])
    students = generate(scratch, module, args.count)
    limits = grading.Limits()
    print(f"{args.count} submissions of {module.slug} in {scratch}, {os.cpu_count()} cores")
    runs = []
    for workers in args.workers:
        seconds = grading_pass(scratch, module, students, limits, workers)
        runs.append({"engine": "threads", "workers": workers, "seconds": round(seconds, 1),
                     "per_minute": round(60 * args.count / seconds, 1)})
        print(f"  {workers} worker(s): {seconds:7.1f} s  {runs[-1]['per_minute']:6.1f} submissions/minute", flush=True)
    if args.dask:
        from distributed import Client

        workers = max(args.workers)
        with Client(n_workers=workers, threads_per_worker=1, dashboard_address=None) as client:
            seconds = grading_pass(scratch, module, students, limits, workers, client.get_executor())
        runs.append({"engine": "dask-local", "workers": workers, "seconds": round(seconds, 1),
                     "per_minute": round(60 * args.count / seconds, 1)})
        print(f"  dask, {workers} worker(s): {seconds:7.1f} s  {runs[-1]['per_minute']:6.1f} submissions/minute")
    out = root / "bench" / "results" / f"grading_throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"module": module.slug, "count": args.count, "cores": os.cpu_count(),
                               "python": platform.python_version(), "limits": vars(limits), "runs": runs}, indent=1))
    print(f"wrote {out.relative_to(root)}")


if __name__ == "__main__":
    main()
