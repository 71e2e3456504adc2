"""What the two LeNet milestones share: their command line, their run, and their one-line errors.

The data pipeline (split, normalisation, augmentation, loaders) and the epoch report are the MLP
milestone's own functions, loaded from milestones/01_mlp_cifar10.py, so all CIFAR-10 milestones prepare
and report data the same way. A LeNet milestone script supplies its model builder, its name and its
default hyper-parameters (chosen on the validation split; see each script's docstring).
"""
import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _mlp_milestone():
    spec = importlib.util.spec_from_file_location("mlp_cifar10", HERE / "01_mlp_cifar10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(doc, defaults, argv=None):
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=defaults["epochs"], help=f"training epochs (default {defaults['epochs']})")
    parser.add_argument("--batch-size", type=int, default=defaults.get("batch_size", 128))
    parser.add_argument("--lr", type=float, default=defaults["lr"], help=f"peak learning rate of SGD (default {defaults['lr']})")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=defaults["weight_decay"])
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up, then cosine decay to 0")
    parser.add_argument("--crop-padding", type=int, default=defaults["crop_padding"],
                        help=f"random crop with this padding as augmentation (default {defaults['crop_padding']}; 0 = off)")
    parser.add_argument("--no-flip", action="store_true", help="turn off random horizontal flips")
    parser.add_argument("--val-size", type=int, default=5000, help="training images held out for validation")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, the initialisation and the batches")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 5,000 training, 1,000 validation and 1,000 test images, 2 epochs")
    parser.add_argument("--skip-test", action="store_true",
                        help="model-selection runs: report validation accuracy only, never look at the test set")
    parser.add_argument("--run-dir", type=Path, help="output folder (default milestones/runs/<name>-<time>)")
    parser.add_argument("--resume", type=Path, help="continue from a checkpoint.npz written by an earlier run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown on a terminal)")
    args = parser.parse_args(argv)
    args.dropout = 0.0  # read by the shared data pipeline's summary only
    if args.quick and "--epochs" not in (argv if argv is not None else sys.argv[1:]):
        args.epochs = 2
    for name in ("epochs", "batch_size", "val_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.resume is not None and not args.resume.is_file():
        parser.error(f"--resume {args.resume}: no such checkpoint file")
    return args


def run(name, title, build_model, doc, defaults, argv=None):
    """Train `build_model()` on CIFAR-10 as the MLP milestone does; expected failures are one line and exit 2."""
    from tinytorch.data import DataFileError
    from tinytorch.train.loop import CheckpointError
    args = parse_args(doc, defaults, argv)
    try:
        return _train(name, title, build_model, args, argv)
    except (CheckpointError, DataFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _train(name, title, build_model, args, argv):
    from tinytorch.nn.layers import manual_seed
    from tinytorch.nn.losses import cross_entropy
    from tinytorch.optim import SGD
    from tinytorch.train.loop import Trainer, WarmupCosine, evaluate
    mlp = _mlp_milestone()
    started = time.perf_counter()
    manual_seed(args.seed)
    train, val, test, stats = mlp.prepare_data(args)
    train_loader, val_loader, test_loader = mlp.make_loaders(args, train, val, test, stats)
    model = build_model()
    optimizer = SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    steps = args.epochs * len(train_loader)
    schedule = WarmupCosine(optimizer, total_steps=steps, warmup_steps=min(steps, round(args.warmup_epochs * len(train_loader))))
    run_dir = args.run_dir or (args.resume.parent if args.resume else HERE / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    progress = not args.no_progress and sys.stderr.isatty()
    trainer = Trainer(model, optimizer, cross_entropy, train_loader, val_loader, schedule, run_dir=run_dir,
                      progress=progress, log=lambda record: print(mlp.describe(record, args.epochs), flush=True))
    print(f"CIFAR-10 {title}: {sum(p.size for p in model.parameters()):,} parameters; {len(train[1]):,} training, "
          f"{len(val[1]):,} validation, {len(test[1]):,} test images; {args.epochs} epochs of {len(train_loader)} "
          f"batches of {args.batch_size}; run folder {run_dir}", flush=True)
    if args.resume:
        trainer.resume(args.resume)
        print(f"resumed from {args.resume} at epoch {trainer.epoch + 1}, batch {trainer.batch}", flush=True)
    trainer.fit(args.epochs)
    script = Path(sys.argv[0]).name if argv is None else f"{name}.py"
    if trainer.stop_requested:
        print(f"stopped; continue with: python milestones/{script} --resume {Path(run_dir) / 'checkpoint.npz'}"
              + "".join(mlp._rebuild_flags(argv)))
        return 130
    result = None if args.skip_test else evaluate(model, test_loader.batches(0), cross_entropy)
    wall = time.perf_counter() - started
    final = trainer.history[-1]
    summary = {"test_accuracy": result and result["accuracy"], "test_loss": result and result["loss"],
               "val_accuracy": final.get("val_accuracy"), "best_val_accuracy": max(r.get("val_accuracy", 0) for r in trainer.history),
               "train_accuracy": final["train_accuracy"], "epochs": args.epochs, "wall_seconds": wall,
               "train_seconds": sum(r["epoch_seconds"] for r in trainer.history),
               "parameters": sum(p.size for p in model.parameters()),
               "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "command": " ".join(["python", *sys.argv]) if argv is None else None}
    (Path(run_dir) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    tested = "test accuracy not measured (--skip-test)" if result is None else \
        f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f})"
    print(f"{tested} after {args.epochs} epochs; validation {final.get('val_accuracy', float('nan')):.4f}; "
          f"wall time {wall:.0f} s ({summary['train_seconds']:.0f} s training)", flush=True)
    print(f"curves: {Path(run_dir) / 'curves.png'}  metrics: {Path(run_dir) / 'metrics.jsonl'}")
    return 0
