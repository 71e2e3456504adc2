"""What every milestone script shares, so each script holds only its model and its story.

A milestone's expected mistakes (a bad option, a missing or foreign checkpoint, no data and no network,
a damaged cache, Ctrl-C before training starts) end in one line on stderr and exit status 2, before
anything is written; Ctrl-C during training is the Trainer's (checkpoint, then the resume command).

    from _common import MilestoneError, cifar10, milestone_parser, parse, resume, resume_command, run, ...

    def main(argv=None):
        parser = milestone_parser(__doc__, epochs=30, batch_size=128, quick="5,000 training images, 3 epochs")
        parser.add_argument("--lr", type=float, default=0.05)      # the milestone's own options
        args = parse(parser, argv, train_size=50_000, quick_epochs=3)
        (train_x, train_y), (test_x, test_y) = cifar10(args)
        ...                                                        # model, loaders, Trainer(run_dir=...)
        resume(trainer, args)                                      # no-op without --resume
        trainer.fit(args.epochs)
        if trainer.stop_requested:
            print(resume_command(__file__, run_dir / "checkpoint.npz", argv)); return 130
        print(... + timing(wall, trainer.history, args.resume))
        clean_quick_run(args, run_dir)

    if __name__ == "__main__":
        sys.exit(run(main))
"""
import argparse
import shlex
import shutil
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ("checkpoint.npz", "best.npz")


class MilestoneError(Exception):
    """An expected mistake: its message says what is wrong and what to do, in one line."""


def run(main, argv=None):
    """`main(argv)`'s exit status; a MilestoneError, a data file or checkpoint error, or Ctrl-C before
    training becomes one line on stderr and status 2."""
    from tinytorch.data import DataFileError
    from tinytorch.train.loop import CheckpointError

    name = Path(sys.argv[0]).name
    try:
        return main(argv)
    except (MilestoneError, DataFileError, CheckpointError) as error:
        print(f"{name}: {one_line(error)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{name}: interrupted before training started; nothing was written", file=sys.stderr)
    return 2


def one_line(error):
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def milestone_parser(description, epochs, batch_size, quick, val_size=5000):
    """The options every milestone has; add the milestone's own to the returned parser."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"(default {batch_size})")
    parser.add_argument("--val-size", type=int, default=val_size,
                        help=f"training images held out for validation (default {val_size})")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, the initialisation and the batches")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {quick}")
    parser.add_argument("--skip-test", action="store_true",
                        help="model-selection runs: report validation accuracy only, never look at the test set")
    parser.add_argument("--run-dir", type=Path, help="output folder (default milestones/runs/<milestone>-<time>)")
    parser.add_argument("--resume", type=Path, help="continue from a checkpoint.npz written by an earlier run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown on a terminal)")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep a --quick run's checkpoints (default: removed when it finishes)")
    return parser


def parse(parser, argv, train_size, quick_epochs):
    """The parsed options, checked: positive sizes, a validation split that leaves training images, a
    readable checkpoint to resume. `train_size` is the data set's training images before the split."""
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    if args.quick and not any(a == "--epochs" or a.startswith("--epochs=") for a in given):
        args.epochs = quick_epochs
    for option in ("epochs", "batch_size"):
        if getattr(args, option) < 1:
            raise MilestoneError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")
    if not 1 <= args.val_size < train_size:
        raise MilestoneError(f"--val-size must be between 1 and {train_size - 1} (the data set has {train_size:,} "
                             f"training images), got {args.val_size}")
    if args.resume is not None:
        from tinytorch.train.loop import read_checkpoint
        if not args.resume.is_file():
            raise MilestoneError(f"--resume {args.resume}: no such checkpoint (a run writes checkpoint.npz into its "
                                 "run folder)")
        read_checkpoint(args.resume)  # a damaged file is refused before any data is loaded
    return args


def cifar10(args):
    """CIFAR-10's ((train images, labels), (test images, labels)), said first when it must be decoded or
    downloaded; a damaged cached copy is removed and rebuilt once, with a note."""
    from tinytorch.data import CIFAR10, cache_dir, data_mirrors, load_cifar10
    cache = cache_dir() / "cifar10"
    ready = [m / p for m in data_mirrors() for p in (CIFAR10.folder, f"cifar10/{CIFAR10.folder}")]
    ready += [cache / CIFAR10.folder, *cache.glob(f"{CIFAR10.folder}-from-jpeg-*")]
    if not any(p.is_dir() for p in ready):
        print(f"CIFAR-10 is not in the cache ({cache}) yet: decoding the mirror's JPEG copy or downloading the "
              "archive, once (about 15 s to decode, several minutes to download)", flush=True)
    return load_data(lambda: load_cifar10(progress=not args.no_progress), "CIFAR-10")


def load_data(load, name):
    """`load()`'s result. A damaged copy in the cache (named by the loader's DataFileError) is removed and
    loaded once more, so it is rebuilt from a mirror or downloaded again; other failures are one line."""
    from tinytorch.data import DataFileError, cache_dir, data_mirrors
    cache = cache_dir()
    try:
        return load()
    except DataFileError as error:
        damaged = _cached_entry(str(error), cache)
        if damaged is None:
            raise MilestoneError(_data_advice(name, error, data_mirrors(), cache)) from None
        print(f"note: the cached copy {damaged} is damaged ({one_line(error)[:200]}); removing it and rebuilding it",
              file=sys.stderr, flush=True)
        shutil.rmtree(damaged) if damaged.is_dir() else damaged.unlink()
    try:
        return load()
    except DataFileError as error:
        raise MilestoneError(_data_advice(name, error, data_mirrors(), cache)) from None


def _cached_entry(message, cache):
    """The top-level entry of the cache (e.g. cifar10/<folder>) that a loader's message names, if any."""
    start = message.find(str(cache) + "/")
    if start < 0:
        return None
    relative = message[start + len(str(cache)) + 1:].split(":")[0].split()[0]
    parts = Path(relative).parts
    entry = cache.joinpath(*parts[:2]) if len(parts) >= 2 else None
    return entry if entry is not None and entry.exists() else None


def _data_advice(name, error, mirrors, cache):
    text = one_line(error)
    if "could not download" in text:
        places = ", ".join(str(m) for m in mirrors) or "no mirror"
        reason = text.split(";")[0].split(": ", 1)[-1] if ";" in text else text
        return (f"{name} was found neither in the mirrors ({places}) nor in the cache ({cache}), and downloading "
                f"it failed ({reason[:200]}): set $TINYTORCH_DATA to a folder holding it, or connect to the internet")
    return text


def resume(trainer, args):
    """Continue `trainer` from `args.resume` (nothing without it); one line when the checkpoint belongs to
    another model or configuration, or to a run that already finished its epochs."""
    from tinytorch.train.loop import CheckpointError
    if args.resume is None:
        return
    try:
        trainer.resume(args.resume)
    except CheckpointError as error:
        raise MilestoneError(f"--resume {args.resume}: {one_line(error).replace(str(args.resume) + ': ', '')}; "
                             "resume with the options of the run that wrote it, or start a new run") from None
    if trainer.epoch >= args.epochs:
        raise MilestoneError(f"--resume {args.resume}: that run already finished its {trainer.epoch} epochs; "
                             f"pass --epochs N with N > {trainer.epoch} to train it further")
    print(f"resumed from {args.resume} at epoch {trainer.epoch + 1}, batch {trainer.batch}", flush=True)


def resume_command(script, checkpoint, argv=None):
    """The command that continues a stopped run, through scripts/milestone.sh (which works outside the venv),
    with the run's other options."""
    flags, skip = [], False
    for token in (argv if argv is not None else sys.argv[1:]):
        if skip:
            skip = False
        elif token in ("--resume", "--run-dir"):
            skip = True
        elif not token.startswith(("--resume=", "--run-dir=")):
            flags.append(token)
    words = ["bash", "scripts/milestone.sh", Path(script).stem, "--resume", str(checkpoint), *flags]
    return f"stopped; continue with: {shlex.join(words)}"


def timing(wall, history, resumed):
    """Where the time went: this session's wall time and, for a resumed run, training over all sessions."""
    training = sum(r["epoch_seconds"] for r in history)
    if resumed:
        return f"this session {wall:.0f} s wall time; {training:.0f} s of training over all sessions"
    return f"wall time {wall:.0f} s ({training:.0f} s training)"


def clean_quick_run(args, run_dir):
    """A finished --quick run keeps its metrics, curves and summary but not its checkpoints (unless asked)."""
    if not args.quick or args.keep_checkpoints:
        return
    removed = [name for name in CHECKPOINTS if (Path(run_dir) / name).is_file()]
    for name in removed:
        (Path(run_dir) / name).unlink()
    if removed:
        print(f"removed the --quick run's {' and '.join(removed)} (--keep-checkpoints keeps them)")
