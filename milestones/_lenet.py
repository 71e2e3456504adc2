"""What the two LeNet milestones share: their options and their run.

Everything every milestone shares (common options, checks, one-line errors, resuming) is `_common`'s;
the data pipeline (split, normalisation, augmentation, loaders) and the epoch report are the MLP
milestone's own functions, loaded from 01_mlp_cifar10.py, so all CIFAR-10 milestones prepare and report
data the same way. A LeNet script supplies its model builder, its name and its default hyper-parameters.
"""
import importlib.util
import json
import sys
import time
from pathlib import Path

from _common import clean_quick_run, milestone_parser, parse, resume, resume_command, run, timing

HERE = Path(__file__).resolve().parent


def _mlp_milestone():
    spec = importlib.util.spec_from_file_location("mlp_cifar10", HERE / "01_mlp_cifar10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(doc, defaults, argv=None):
    parser = milestone_parser(doc, epochs=defaults["epochs"], batch_size=128,
                              quick="5,000 training, 1,000 validation and 1,000 test images, 2 epochs")
    parser.add_argument("--lr", type=float, default=defaults["lr"], help=f"peak learning rate of SGD (default {defaults['lr']})")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=defaults["weight_decay"],
                        help=f"(default {defaults['weight_decay']})")
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up, then cosine decay to 0")
    parser.add_argument("--crop-padding", type=int, default=defaults["crop_padding"],
                        help=f"random crop with this padding as augmentation (default {defaults['crop_padding']}; 0 = off)")
    parser.add_argument("--no-flip", action="store_true", help="turn off random horizontal flips")
    return parse(parser, argv, train_size=50_000, quick_epochs=2)


def main(script, doc, name, title, build_model, defaults, argv=None):
    """Train `build_model()` on CIFAR-10 as the MLP milestone does (run it through `run_milestone`)."""
    from tinytorch.nn.layers import manual_seed
    from tinytorch.nn.losses import cross_entropy
    from tinytorch.optim import SGD
    from tinytorch.train.loop import Trainer, WarmupCosine, evaluate
    args = parse_args(doc, defaults, argv)
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
    resume(trainer, args)
    trainer.fit(args.epochs)
    if trainer.stop_requested:
        print(resume_command(script, Path(run_dir) / "checkpoint.npz", argv))
        return 130
    result = None if args.skip_test else evaluate(model, test_loader.batches(0), cross_entropy)
    wall = time.perf_counter() - started
    final = trainer.history[-1]
    summary = {"test_accuracy": result and result["accuracy"], "test_loss": result and result["loss"],
               "val_accuracy": final.get("val_accuracy"),
               "best_val_accuracy": max(r.get("val_accuracy", 0.0) for r in trainer.history),
               "train_accuracy": final["train_accuracy"], "epochs": args.epochs, "wall_seconds": wall,
               "train_seconds": sum(r["epoch_seconds"] for r in trainer.history),
               "parameters": sum(p.size for p in model.parameters()),
               "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "command": " ".join(["python", *sys.argv]) if argv is None else None}
    (Path(run_dir) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    tested = "test accuracy not measured (--skip-test)" if result is None else \
        f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f})"
    print(f"{tested} after {args.epochs} epochs; validation {final.get('val_accuracy', float('nan')):.4f}; "
          f"{timing(wall, trainer.history, args.resume)}", flush=True)
    print(f"curves: {Path(run_dir) / 'curves.png'}  metrics: {Path(run_dir) / 'metrics.jsonl'}")
    clean_quick_run(args, run_dir)
    return 0


def run_milestone(script, doc, name, title, build_model, defaults, argv=None):
    """The milestone's exit status; expected mistakes are one line on stderr and status 2 (`_common.run`)."""
    return run(lambda args: main(script, doc, name, title, build_model, defaults, args), argv)
