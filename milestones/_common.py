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

A script imports it as `from _common import ...` (a script's folder is on sys.path when it runs); code
that loads a milestone by its path puts milestones/ on sys.path first (bench/mlp_step.py does).
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
    keep_freed_memory()
    try:
        return main(argv)
    except (MilestoneError, DataFileError, CheckpointError) as error:
        print(f"{name}: {one_line(error)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{name}: interrupted before training started; nothing was written", file=sys.stderr)
    return 2


def keep_freed_memory():
    """Module 12's allocator setting (freed temporaries are reused, not page-faulted in again every step);
    before module 12 is exported, the default allocator."""
    try:
        from tinytorch.train.memory import keep_freed_memory as keep
    except ImportError:
        return
    keep()


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


# The CIFAR-10 milestones' run: data, loaders, Trainer and the end-of-run report (01, 02, 03 and 04).

def cifar10_start(args, **data):
    """Seed TinyTorch, then the data and loaders: the start time, the (train, val, test) arrays, the
    normalisation statistics and the (train, val, test) loaders; `data` goes to `cifar10_data` and
    `cifar10_loaders` (quick_sizes, train_size; eval_batch_size, drop_last)."""
    import time
    from tinytorch.nn.layers import manual_seed
    started = time.perf_counter()
    manual_seed(args.seed)
    loader_options = {k: data.pop(k) for k in ("eval_batch_size", "drop_last") if k in data}
    train, val, test, stats = cifar10_data(args, **data)
    return started, (train, val, test), cifar10_loaders(args, train, val, test, stats, **loader_options)


def cifar10_data(args, quick_sizes=(5000, 1000, 1000), train_size=None):
    """Train/validation/test arrays (a --quick run keeps `quick_sizes` of them; `train_size` caps the training
    split) and the normalisation statistics, which come from the training split only."""
    from tinytorch.data import channel_stats, train_val_split
    (train_x, train_y), (test_x, test_y) = cifar10(args)
    (train_x, train_y), (val_x, val_y) = train_val_split(train_x, train_y, args.val_size, seed=args.seed)
    if args.quick:
        n_train, n_val, n_test = quick_sizes
        train_x, train_y, val_x, val_y = train_x[:n_train], train_y[:n_train], val_x[:n_val], val_y[:n_val]
        test_x, test_y = test_x[:n_test], test_y[:n_test]
    if train_size is not None:
        train_x, train_y = train_x[:train_size], train_y[:train_size]
    mean, std = channel_stats(train_x)
    return (train_x, train_y), (val_x, val_y), (test_x, test_y), (mean, std)


def cifar10_loaders(args, train, val, test, stats, eval_batch_size=1000, drop_last=False):
    """The augmented, normalised training loader (flips unless --no-flip, crops with --crop-padding) and the
    normalised validation and test loaders."""
    from tinytorch.data import Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip, TensorDataset
    normalize = Normalize(*stats)
    augment = ([] if args.no_flip else [RandomHorizontalFlip()]) + \
              ([RandomCrop(32, padding=args.crop_padding)] if args.crop_padding else [])
    train_loader = DataLoader(TensorDataset(*train), args.batch_size, shuffle=True, drop_last=drop_last, seed=args.seed,
                              transform=Compose(augment + [normalize]))
    evaluation = lambda arrays: DataLoader(TensorDataset(*arrays), eval_batch_size, transform=normalize)
    return train_loader, evaluation(val), evaluation(test)


def describe(record, epochs):
    """One epoch's line of the run's log."""
    line = f"epoch {record['epoch']:3d}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}"
    if "val_accuracy" in record:
        line += f"  |  val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.4f}"
    return line + f"  |  lr {record['lr']:.4f}  {record['epoch_seconds']:5.1f} s ({record['images_per_second']:,.0f} img/s)"


def cifar10_trainer(args, name, title, model, optimizer, loss_fn, data, loaders):
    """The Trainer (warm-up + cosine schedule, run folder milestones/runs/<name>-<time> unless given, one
    `describe` line per epoch), after printing the run's header line; returns it and its run folder."""
    import time
    from tinytorch.train.loop import Trainer, WarmupCosine
    (_, train_y), (_, val_y), (_, test_y) = data
    train_loader, val_loader, _ = loaders
    steps = args.epochs * len(train_loader)
    schedule = WarmupCosine(optimizer, total_steps=steps, warmup_steps=min(steps, round(args.warmup_epochs * len(train_loader))))
    runs = Path(__file__).resolve().parent / "runs"
    run_dir = args.run_dir or (args.resume.parent if args.resume else runs / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    progress = not args.no_progress and sys.stderr.isatty()
    trainer = Trainer(model, optimizer, loss_fn, train_loader, val_loader, schedule, run_dir=run_dir,
                      progress=progress, log=lambda record: print(describe(record, args.epochs), flush=True))
    print(f"CIFAR-10 {title}: {sum(p.size for p in model.parameters()):,} parameters; {len(train_y):,} training, "
          f"{len(val_y):,} validation, {len(test_y):,} test images; {args.epochs} epochs of {len(train_loader)} "
          f"batches of {args.batch_size}; run folder {run_dir}", flush=True)
    return trainer, run_dir


def finish(script, args, argv, trainer, loss_fn, test_loader, started, extra=None, after_fit=None,
           curves=("curves.png",)):
    """After `trainer.fit`: the resume command if it was stopped (status 130); otherwise `after_fit()`, the test
    evaluation (unless --skip-test), summary.json (with the fields `extra()` returns), the closing lines, status 0."""
    import json
    import time
    from tinytorch.train.loop import evaluate
    run_dir = Path(trainer.run_dir)
    if trainer.stop_requested:
        print(resume_command(script, run_dir / "checkpoint.npz", argv))
        return 130
    if after_fit:
        after_fit()
    result = None if args.skip_test else evaluate(trainer.model, test_loader.batches(0), loss_fn)
    wall = time.perf_counter() - started
    final = trainer.history[-1]
    summary = {"test_accuracy": result and result["accuracy"], "test_loss": result and result["loss"],
               "val_accuracy": final.get("val_accuracy"), "train_accuracy": final["train_accuracy"],
               "epochs": args.epochs, "wall_seconds": wall,
               "train_seconds": sum(r["epoch_seconds"] for r in trainer.history), **(extra() if extra else {}),
               "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "command": " ".join(["python", *sys.argv]) if argv is None else None}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    tested = "test accuracy not measured (--skip-test)" if result is None else \
        f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f})"
    print(f"{tested} after {args.epochs} epochs; validation {final.get('val_accuracy', float('nan')):.4f}; "
          f"{timing(wall, trainer.history, args.resume)}", flush=True)
    print(f"curves: {', '.join(str(run_dir / name) for name in curves)}  metrics: {run_dir / 'metrics.jsonl'}")
    clean_quick_run(args, run_dir)
    return 0
