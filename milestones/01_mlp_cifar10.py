"""Milestone 1, the MLP era (1986): a multi-layer perceptron trained by backpropagation on CIFAR-10.

Rumelhart, Hinton and Williams (1986) showed that backpropagation trains networks with hidden layers.
This script trains one on real photographs (CIFAR-10: 60,000 32x32 colour images of 10 classes;
Krizhevsky, 2009) with nothing but the TinyTorch you built: Tensor and autograd (01-02), Linear and
ReLU (03-04), cross-entropy (05), SGD with momentum (06), the data loader with augmentation (07)
and the Trainer with its warm-up + cosine schedule and checkpoints (08).

Model selection uses a validation split held out from the 50,000 training images; the 10,000 test
images are evaluated once, at the end. Every run writes into its own folder under milestones/runs/
(gitignored): metrics.jsonl (one line per epoch), curves.png, checkpoint.npz (resumable), best.npz
(best validation accuracy), summary.json; a --quick run drops its checkpoints when it finishes.
Ctrl-C stops cleanly after saving a checkpoint and prints the command that resumes it.

    bash scripts/milestone.sh                  # the full run (installs what it needs into .venv first)
    bash scripts/milestone.sh --quick          # smoke test on a small slice (a few seconds)
    bash scripts/milestone.sh 01_mlp_cifar10 --resume milestones/runs/<run>/checkpoint.npz
    python milestones/01_mlp_cifar10.py ...    # the same, inside the activated .venv

Data: read-only copies are looked for in $TINYTORCH_DATA and ../shared/data, then the cache
$TINYTORCH_CACHE (default ~/.cache/tinytorch); otherwise the canonical archive is downloaded (see
tinytorch.data.load_cifar10).
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

from _common import clean_quick_run, cifar10, milestone_parser, parse, resume, resume_command, run, timing

HERE = Path(__file__).resolve().parent
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def build_mlp(hidden=(512, 256), dropout=0.0, dtype=np.float32):
    """Flatten -> Linear 3072-512 -> ReLU -> Linear 512-256 -> ReLU -> Linear 256-10 (optional dropout after each ReLU)."""
    from tinytorch.nn.layers import Dropout, Flatten, Linear, ReLU, Sequential
    layers, width = [Flatten()], 3 * 32 * 32
    for size in hidden:
        layers += [Linear(width, size, dtype=dtype), ReLU()] + ([Dropout(dropout)] if dropout else [])
        width = size
    return Sequential(*layers, Linear(width, len(CLASSES), dtype=dtype))


def parse_args(argv=None):
    parser = milestone_parser(__doc__, epochs=30, batch_size=128,
                              quick="5,000 training, 1,000 validation and 1,000 test images, 3 epochs")
    parser.add_argument("--lr", type=float, default=0.05, help="peak learning rate of SGD (default 0.05)")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up, then cosine decay to 0")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout after each hidden layer (default off)")
    parser.add_argument("--crop-padding", type=int, default=0,
                        help="random crop with this padding as augmentation (default 0: off)")
    parser.add_argument("--no-flip", action="store_true", help="turn off random horizontal flips")
    return parse(parser, argv, train_size=50_000, quick_epochs=3)


def prepare_data(args):
    """Train/validation/test arrays; the normalisation statistics come from the training split only."""
    from tinytorch.data import channel_stats, train_val_split
    (train_x, train_y), (test_x, test_y) = cifar10(args)
    (train_x, train_y), (val_x, val_y) = train_val_split(train_x, train_y, args.val_size, seed=args.seed)
    if args.quick:
        train_x, train_y, val_x, val_y = train_x[:5000], train_y[:5000], val_x[:1000], val_y[:1000]
        test_x, test_y = test_x[:1000], test_y[:1000]
    mean, std = channel_stats(train_x)
    return (train_x, train_y), (val_x, val_y), (test_x, test_y), (mean, std)


def make_loaders(args, train, val, test, stats):
    from tinytorch.data import Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip, TensorDataset
    normalize = Normalize(*stats)
    augment = ([] if args.no_flip else [RandomHorizontalFlip()]) + \
              ([RandomCrop(32, padding=args.crop_padding)] if args.crop_padding else [])
    train_loader = DataLoader(TensorDataset(*train), args.batch_size, shuffle=True, seed=args.seed,
                              transform=Compose(augment + [normalize]))
    evaluation = lambda arrays: DataLoader(TensorDataset(*arrays), 1000, transform=normalize)
    return train_loader, evaluation(val), evaluation(test)


def describe(record, epochs):
    line = (f"epoch {record['epoch']:3d}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}")
    if "val_accuracy" in record:
        line += f"  |  val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.4f}"
    return line + f"  |  lr {record['lr']:.4f}  {record['epoch_seconds']:5.1f} s ({record['images_per_second']:,.0f} img/s)"


def main(argv=None):
    args = parse_args(argv)
    from tinytorch.nn.layers import manual_seed
    from tinytorch.nn.losses import cross_entropy
    from tinytorch.optim import SGD
    from tinytorch.train.loop import Trainer, WarmupCosine, evaluate

    started = time.perf_counter()
    manual_seed(args.seed)
    train, val, test, stats = prepare_data(args)
    train_loader, val_loader, test_loader = make_loaders(args, train, val, test, stats)
    model = build_mlp(dropout=args.dropout)
    optimizer = SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    steps = args.epochs * len(train_loader)
    schedule = WarmupCosine(optimizer, total_steps=steps, warmup_steps=min(steps, round(args.warmup_epochs * len(train_loader))))
    run_dir = args.run_dir or (args.resume.parent if args.resume else HERE / "runs" / f"mlp_cifar10-{time.strftime('%Y%m%d-%H%M%S')}")
    progress = not args.no_progress and sys.stderr.isatty()
    trainer = Trainer(model, optimizer, cross_entropy, train_loader, val_loader, schedule, run_dir=run_dir,
                      progress=progress, log=lambda record: print(describe(record, args.epochs), flush=True))
    print(f"CIFAR-10 MLP: {sum(p.size for p in model.parameters()):,} parameters; {len(train[1]):,} training, "
          f"{len(val[1]):,} validation, {len(test[1]):,} test images; {args.epochs} epochs of {len(train_loader)} "
          f"batches of {args.batch_size}; run folder {run_dir}", flush=True)
    resume(trainer, args)
    trainer.fit(args.epochs)
    if trainer.stop_requested:
        print(resume_command(__file__, Path(run_dir) / "checkpoint.npz", argv))
        return 130
    result = None if args.skip_test else evaluate(model, test_loader.batches(0), cross_entropy)
    wall = time.perf_counter() - started
    final = trainer.history[-1]
    summary = {"test_accuracy": result and result["accuracy"], "test_loss": result and result["loss"],
               "val_accuracy": final.get("val_accuracy"), "train_accuracy": final["train_accuracy"],
               "epochs": args.epochs, "wall_seconds": wall,
               "train_seconds": sum(r["epoch_seconds"] for r in trainer.history),
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


if __name__ == "__main__":
    sys.exit(run(main))
