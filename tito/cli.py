"""tito: one command per step of the course, for instructors and students.

Every expected mistake (an unknown module, a missing folder, a broken notebook) is one line on
stderr and exit status 2, never a traceback.
"""
import argparse
import os
import shutil
import sys
from contextlib import nullcontext
from pathlib import Path

import tinytorch
from tito import course, demo, feedback, gradebook, grading, nbgrader_ops, report, sandbox, student
from tito.errors import TitoError
from tito.project import find_course, find_root, list_modules, resolve


def cmd_modules(args):
    for module in list_modules(find_root()):
        print(f"{module.number:02d}  {module.name}")


def cmd_build(args):
    modules = course.build(find_course(), check_only=args.check)
    verb = "checked" if args.check else "exported"
    print(f"{verb} {len(modules)} modules: notebooks clean, structure valid, tinytorch/ matches the notebooks")


def cmd_release(args):
    root = find_course()
    for notebook in course.release(root, resolve(root, args.modules)):
        print(f"released {notebook.relative_to(root)}")


def _print_outcome(outcome):
    """One line per submission as its result is stored, then what went wrong with it, if anything."""
    score = "NOT GRADED" if outcome.status == "error" else f"{outcome.score:g}/{outcome.max_score:g}"
    note = "" if outcome.status == "graded" else f"  ({outcome.status})"
    print(f"{outcome.module}  {outcome.student:<24} {score:>10}{note}", flush=True)
    for problem in outcome.problems:
        print(f"      - {problem}", flush=True)


def _dask_client(address, workers):
    """A Dask client: a local cluster of `workers` processes for 'local', else the scheduler at `address`."""
    from distributed import Client

    if address == "local":
        return Client(n_workers=workers or os.cpu_count(), threads_per_worker=1, dashboard_address=None)
    return Client(address)


def cmd_autograde(args):
    root = find_course()
    modules = resolve(root, args.modules)
    limits = grading.Limits(args.timeout, args.total, args.memory)
    failed = False
    with (_dask_client(args.dask, args.workers) if args.dask else nullcontext()) as client:
        for module in modules:
            outcomes = grading.autograde(root, module, args.student, limits, workers=args.workers,
                                         sandboxed=not args.no_sandbox, on_outcome=_print_outcome,
                                         executor=client.get_executor() if client else None)
            failed |= any(o.status == "error" for o in outcomes)
    rows = gradebook.scores(root, {m.slug for m in modules})
    print()
    print(gradebook.table([r for r in rows if not args.student or r.student in args.student]))
    if failed:
        print("\nsome submissions were NOT GRADED (grader errors above; their stored grades are unchanged)")
    return 1 if failed else 0


def cmd_grades(args):
    root = find_course()
    requested = resolve(root, args.modules) if args.modules else []
    rows = gradebook.scores(root, {m.slug for m in requested} if requested else None)
    if not rows:
        raise TitoError("no grades yet: run `tito autograde NN` first")
    for module in requested:
        if not any(r.module == module.slug for r in rows):
            print(f"{module.slug}: no grades yet (run `tito autograde {module.number:02d}`)", file=sys.stderr)
    output = Path(args.csv) if args.csv else root / "course" / "grades.csv"
    gradebook.write_atomically(output, gradebook.to_csv(rows))
    print(gradebook.table(rows, [m.slug for m in requested]))
    print(f"\nwrote {output}")


def cmd_feedback(args):
    root = find_course()
    for module in resolve(root, args.modules):
        written = feedback.write(root, module, args.student)
        if not written:
            raise TitoError(f"no graded submissions of {module.slug}{' for ' + ', '.join(args.student) if args.student else ''}: "
                            f"run `tito autograde {module.number:02d}` first")
        for path in written:
            print(f"wrote {path.relative_to(root)}")


def cmd_roster(args):
    root = find_course()
    csv_path = Path(args.csv).resolve()
    if not csv_path.is_file():
        raise TitoError(f"no roster file {args.csv}")
    result = nbgrader_ops.run_nbgrader(root, "db", "student", "import", str(csv_path))
    problems = nbgrader_ops.error_lines(result)
    if result.returncode != 0 or problems:
        detail = (problems or (result.stderr or result.stdout or "no output").strip().splitlines())[-1]
        raise TitoError(f"roster not imported: {detail} (expected columns id,first_name,last_name,email)")
    print(f"imported the students of {args.csv} into the gradebook (Formgrader shows their names)")


def cmd_report(args):
    root = find_course()
    for module in resolve(root, args.modules):
        for path in report.write(root, module):
            print(f"wrote {path.relative_to(root)}")


def cmd_demo(args):
    root = find_course()
    if not args.no_sandbox:
        sandbox.require()
    scratch = demo.scratch_course(root)
    print(f"demo course in {scratch} ({'kept' if args.keep else 'removed at the end; --keep keeps it'})")
    try:
        modules = resolve(scratch, args.modules)
        course.release(scratch, modules)
        demo.submit_class(scratch, modules)
        for module in modules:
            grading.autograde(scratch, module, sandboxed=not args.no_sandbox, on_outcome=_print_outcome)
        print()
        print(gradebook.table(gradebook.scores(scratch)))
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


def cmd_sandbox(args):
    sandbox.require()
    print("bubblewrap can sandbox grading here")


def cmd_student(args):
    path = student.init(find_course(), args.folder)
    print(f"created {path}\nnext: cd {path} && pip install -e '.[dev]' && tito status")


def cmd_export(args):
    root = find_root()
    for module in resolve(root, args.modules):
        student.export(root, module)
        print(f"exported {module.slug} -> {student.exported_file(root, module).relative_to(root)}")


def cmd_test(args):
    root = find_root()
    failed = False
    for module in resolve(root, args.modules):
        seen, results = student.test(root, module)
        earned = sum(r.points for r in results if r.passed)
        print(f"{module.slug}: {earned:g}/{sum(r.points for r in results):g} points (tinytorch from {seen})")
        for result in results:
            mark = "pass" if result.passed else "FAIL"
            print(f"  {mark}  {result.grade_id:<28} {result.points:>3g}  {result.message}")
        failed |= not all(r.passed for r in results)
    return 1 if failed else 0


def cmd_status(args):
    root = find_root()
    upcoming = None
    for module, stubs, result in student.status(root):
        todo = "not exported" if stubs is None else ("all written" if stubs == 0 else f"{stubs} parts to write")
        tested = f"tests {result['earned']:g}/{result['total']:g}" if result else "not tested"
        done = stubs == 0 and result and result["earned"] == result["total"]
        upcoming = upcoming or (None if done else module)
        print(f"{'done' if done else '    '}  {module.slug:<20} {todo:<18} {tested}")
    print(f"\nnext: {upcoming.slug} (modules/{upcoming.slug}/{upcoming.slug}.ipynb)" if upcoming else "\nevery module done")


def parser():
    top = argparse.ArgumentParser(prog="tito", description="The TinyTorch course tool.")
    top.add_argument("--version", action="version", version=f"tito {tinytorch.__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="command")

    def command(name, handler, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    modules_arg = dict(nargs="*", metavar="NN", help="module numbers or names (default: all)")
    command("modules", cmd_modules, "list the course's modules")
    build = command("build", cmd_build, "instructor: clean notebooks, export tinytorch/, check both agree")
    build.add_argument("--check", action="store_true", help="change nothing; fail if notebooks or tinytorch/ are stale")
    command("release", cmd_release, "instructor: generate student notebooks under course/release/").add_argument("modules", **modules_arg)
    grade = command("autograde", cmd_autograde, "instructor: grade course/submitted/<student>/<module>/ against the "
                    "student's own code, each submission in its own sandboxed process")
    grade.add_argument("modules", nargs="+", metavar="NN", help="module numbers or names")
    grade.add_argument("--student", action="append", metavar="ID", help="only this student (repeatable)")
    grade.add_argument("--timeout", type=int, default=grading.Limits.cell_timeout, metavar="S",
                       help=f"seconds per cell (default {grading.Limits.cell_timeout})")
    grade.add_argument("--total", type=int, default=grading.Limits.total_timeout, metavar="S",
                       help=f"seconds per submission, all cells together (default {grading.Limits.total_timeout}); the hidden checks get half as much again")
    grade.add_argument("--memory", type=int, default=grading.Limits.memory_mb, metavar="MB",
                       help=f"memory cap of a submission's kernel (default {grading.Limits.memory_mb})")
    grade.add_argument("--workers", type=int, metavar="N", help="submissions graded at once (default: number of cores)")
    grade.add_argument("--dask", metavar="ADDRESS", help="grade on a Dask cluster: a scheduler address, or 'local'")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="run submissions without bubblewrap (unsafe: they can read the answer key)")
    grades = command("grades", cmd_grades, "instructor: write grades as CSV and print a summary table")
    grades.add_argument("modules", **modules_arg)
    grades.add_argument("--csv", metavar="PATH", help="where to write the CSV (default course/grades.csv)")
    notes = command("feedback", cmd_feedback, "instructor: write each student's feedback (pass/fail and message per "
                    "test, no test source) to course/feedback/<student>/<module>/")
    notes.add_argument("modules", nargs="+", metavar="NN", help="module numbers or names")
    notes.add_argument("--student", action="append", metavar="ID", help="only this student (repeatable)")
    roster = command("roster", cmd_roster, "instructor: import students (CSV columns id,first_name,last_name,email) "
                     "into the gradebook")
    roster.add_argument("csv", help="the roster file")
    command("report", cmd_report, "instructor: write a module's grading report (score histogram, tests most often "
            "failed, problems) to course/reports/").add_argument("modules", nargs="+", metavar="NN")
    demo_cmd = command("demo", cmd_demo, "build the course and grade a demo class (honest, blank, cheat, half) in a scratch copy")
    demo_cmd.add_argument("modules", **modules_arg)
    demo_cmd.add_argument("--no-sandbox", action="store_true", help="grade without bubblewrap")
    demo_cmd.add_argument("--keep", action="store_true", help="keep the scratch course (default: removed at the end)")
    command("sandbox", cmd_sandbox, "instructor: check that submissions can be graded in the sandbox here")
    command("student", cmd_student, "instructor: create a student's working copy from the release").add_argument("folder", help="new folder")
    command("export", cmd_export, "student: export module notebooks into your tinytorch/").add_argument("modules", nargs="+", metavar="NN")
    command("test", cmd_test, "student: export, then run a module's tests against your exported tinytorch").add_argument("modules", nargs="+", metavar="NN")
    command("status", cmd_status, "student: what is done and what is next")
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except TitoError as error:
        print(f"tito: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tito: interrupted", file=sys.stderr)
        return 130
