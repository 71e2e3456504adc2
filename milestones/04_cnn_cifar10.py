"""Milestone 4, the modern CNN (2015-2016): BatchNorm, residual connections and augmentation on CIFAR-10.

Batch normalization (Ioffe and Szegedy, 2015) and residual connections (He et al., 2016) made deep
convolutional networks train quickly and reliably; the fast CIFAR-10 trainers of the following years
(Page's ResNet-9 "DAWNBench" runs, Keller Jordan's airbench) added flip-and-translate augmentation, label
smoothing and a short warm-up then decay of the learning rate. This script trains such a network, small
enough for a 2-core CPU, with nothing but the TinyTorch you built: convolutions and pooling (10), BatchNorm
and residual blocks (11), cross-entropy (05), SGD with Nesterov momentum (06), the data loader with random
crops and flips (07) and the Trainer with its warm-up + cosine schedule and checkpoints (08).

The network (a ResNet-9 shape at a quarter of its width by default, --width 16):
    conv 3->w, BN, ReLU                                                  32x32
    conv w->2w, BN, ReLU, max-pool 2;   residual block (2w)              16x16
    conv 2w->4w, BN, ReLU, max-pool 2                                     8x8
    conv 4w->8w, BN, ReLU, max-pool 2;  residual block (8w)               4x4
    global max-pool, linear 8w->10 (logits scaled by 1/8)

Model selection uses a validation split held out from the 50,000 training images; the 10,000 test
images are evaluated once, at the end. Every run writes into its own folder under milestones/runs/
(gitignored): metrics.jsonl (one line per epoch), curves.png, accuracy_vs_time.png, checkpoint.npz
(resumable), best.npz (best validation accuracy), summary.json (with test_accuracy, wall_seconds and
the per-step time split into data, forward, backward and optimizer), profile.txt (module 09's per-operation
profile of those steps).
Ctrl-C stops cleanly after saving a checkpoint.

    python milestones/04_cnn_cifar10.py                 # the full run
    python milestones/04_cnn_cifar10.py --quick         # smoke test on a small slice (well under a minute)
    python milestones/04_cnn_cifar10.py --resume milestones/runs/<run>/checkpoint.npz
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def build_cnn(width=16):
    """The ResNet-9 shape of the module docstring, `width` channels after the first convolution."""
    from tinytorch.nn.conv import Conv2d, MaxPool2d
    from tinytorch.nn.layers import Flatten, Linear, Module, ReLU, Sequential
    from tinytorch.nn.norm import BatchNorm2d, ResidualBlock

    def conv_bn(c_in, c_out, pool=False):
        return [Conv2d(c_in, c_out, 3, padding=1, bias=False), BatchNorm2d(c_out), ReLU()] + ([MaxPool2d(2)] if pool else [])

    class Scale(Module):
        """Multiply by a constant: small initial logits, as the fast CIFAR-10 trainers do."""

        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    w = width
    return Sequential(*conv_bn(3, w),
                      *conv_bn(w, 2 * w, pool=True), ResidualBlock(2 * w, 2 * w),
                      *conv_bn(2 * w, 4 * w, pool=True),
                      *conv_bn(4 * w, 8 * w, pool=True), ResidualBlock(8 * w, 8 * w),
                      MaxPool2d(4), Flatten(), Linear(8 * w, len(CLASSES)), Scale(0.125))


def smoothed_cross_entropy(smoothing):
    """Cross-entropy against targets that keep 1 - smoothing on the label and spread `smoothing` over all classes."""
    from tinytorch.nn.activations import log_softmax
    from tinytorch.nn.losses import cross_entropy

    def loss(logits, targets):
        if smoothing == 0:
            return cross_entropy(logits, targets)
        uniform = -log_softmax(logits, axis=-1).mean()  # mean over the batch and the classes
        return cross_entropy(logits, targets) * (1 - smoothing) + uniform * smoothing
    return loss


class UsageError(Exception):
    """A mistake in the command line or its files: one line on stderr, exit status 2."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument("--width", type=int, default=16, help="channels of the first convolution (default 16)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.2, help="peak learning rate of SGD (default 0.2)")
    parser.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum (default 0.9)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up, then cosine decay to 0")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--crop-padding", type=int, default=2,
                        help="random translation by up to this many pixels (pad and crop; 0: off; default 2)")
    parser.add_argument("--no-flip", action="store_true", help="turn off random horizontal flips")
    parser.add_argument("--val-size", type=int, default=5000, help="training images held out for validation")
    parser.add_argument("--train-size", type=int, help="train on only the first N images of the training split "
                        "(short model-selection runs; default: all 45,000)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, the initialisation and the batches")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1,024 training, 256 validation and 256 test images, width 8, 2 epochs")
    parser.add_argument("--skip-test", action="store_true",
                        help="model-selection runs: report validation accuracy only, never look at the test set")
    parser.add_argument("--run-dir", type=Path, help="output folder (default milestones/runs/cnn_cifar10-<time>)")
    parser.add_argument("--resume", type=Path, help="continue from a checkpoint.npz written by an earlier run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown on a terminal)")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    if args.quick:
        args.epochs = args.epochs if "--epochs" in given else 2
        args.width = args.width if "--width" in given else 8
        args.batch_size = args.batch_size if "--batch-size" in given else 64
    for name in ("epochs", "width", "batch_size", "val_size", "train_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.label_smoothing < 1:
        raise UsageError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if args.resume is not None and not args.resume.is_file():
        raise UsageError(f"--resume {args.resume}: no such checkpoint file")
    return args


def prepare_data(args):
    """Train/validation/test arrays; the normalisation statistics come from the training split only."""
    from tinytorch.data import channel_stats, load_cifar10, train_val_split
    (train_x, train_y), (test_x, test_y) = load_cifar10(progress=not args.no_progress)
    (train_x, train_y), (val_x, val_y) = train_val_split(train_x, train_y, args.val_size, seed=args.seed)
    if args.quick:
        train_x, train_y, val_x, val_y = train_x[:1024], train_y[:1024], val_x[:256], val_y[:256]
        test_x, test_y = test_x[:256], test_y[:256]
    if args.train_size is not None:
        train_x, train_y = train_x[:args.train_size], train_y[:args.train_size]
    mean, std = channel_stats(train_x)
    return (train_x, train_y), (val_x, val_y), (test_x, test_y), (mean, std)


def make_loaders(args, train, val, test, stats):
    from tinytorch.data import Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip, TensorDataset
    normalize = Normalize(*stats)
    augment = ([] if args.no_flip else [RandomHorizontalFlip()]) + \
              ([RandomCrop(32, padding=args.crop_padding)] if args.crop_padding else [])
    # drop_last: a last batch of one image has no batch statistics to normalise with
    train_loader = DataLoader(TensorDataset(*train), args.batch_size, shuffle=True, drop_last=True, seed=args.seed,
                              transform=Compose(augment + [normalize]))
    evaluation = lambda arrays: DataLoader(TensorDataset(*arrays), 500, transform=normalize)
    return train_loader, evaluation(val), evaluation(test)


def time_split(model, loss_fn, optimizer, loader, steps, run_dir):
    """Seconds per training step spent loading data, in forward, in backward and in the optimizer, over `steps`
    steps of epoch 0's batches (timed by the clock around each phase), and module 09's per-operation profile of
    those steps written to run_dir/profile.txt. The weights and optimizer state are restored afterwards."""
    from tinytorch.profile import Profiler
    saved, saved_optimizer = model.state_dict(), optimizer.state_dict()
    totals = dict.fromkeys(("data", "forward", "backward", "optimizer"), 0.0)
    batches = loader.batches(0)
    with Profiler() as profiler:
        for _ in range(steps):
            ticks = [time.perf_counter()]
            inputs, targets = next(batches)
            ticks.append(time.perf_counter())
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            ticks.append(time.perf_counter())
            loss.backward()
            ticks.append(time.perf_counter())
            optimizer.step()
            ticks.append(time.perf_counter())
            for phase, start, end in zip(totals, ticks, ticks[1:]):
                totals[phase] += end - start
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "profile.txt").write_text(profiler.table() + "\n")
    model.load_state_dict(saved)
    optimizer.load_state_dict(saved_optimizer)
    return {phase: seconds / steps for phase, seconds in totals.items()}


def plot_accuracy_vs_time(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    minutes = np.cumsum([r["epoch_seconds"] for r in history]) / 60
    plt.figure(figsize=(6, 3.5))
    plt.plot(minutes, [r["train_accuracy"] for r in history], "o-", label="train (augmented)")
    plt.plot(minutes, [r["val_accuracy"] for r in history], "o-", label="validation")
    plt.axhline(0.8, color="grey", linestyle=":", linewidth=1)
    plt.xlabel("training time (minutes)")
    plt.ylabel("accuracy")
    plt.legend()
    plt.tight_layout()
    plt.savefig(path, dpi=80)
    plt.close()


def describe(record, epochs):
    line = f"epoch {record['epoch']:3d}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}"
    if "val_accuracy" in record:
        line += f"  |  val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.4f}"
    return line + f"  |  lr {record['lr']:.4f}  {record['epoch_seconds']:5.1f} s ({record['images_per_second']:,.0f} img/s)"


def main(argv=None):
    from tinytorch.data import DataFileError
    from tinytorch.train.loop import CheckpointError
    try:
        args = parse_args(argv)
        return train(args, argv)
    except (UsageError, DataFileError, CheckpointError) as error:  # expected mistakes: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2


def train(args, argv):
    from tinytorch.nn.layers import manual_seed
    from tinytorch.optim import SGD
    from tinytorch.train.loop import Trainer, WarmupCosine, evaluate

    started = time.perf_counter()
    manual_seed(args.seed)
    train, val, test, stats = prepare_data(args)
    train_loader, val_loader, test_loader = make_loaders(args, train, val, test, stats)
    model = build_cnn(args.width)
    loss_fn = smoothed_cross_entropy(args.label_smoothing)
    optimizer = SGD(model.parameters(), lr=args.lr, momentum=args.momentum, nesterov=True, weight_decay=args.weight_decay)
    steps = args.epochs * len(train_loader)
    schedule = WarmupCosine(optimizer, total_steps=steps, warmup_steps=min(steps, round(args.warmup_epochs * len(train_loader))))
    run_dir = args.run_dir or (args.resume.parent if args.resume else HERE / "runs" / f"cnn_cifar10-{time.strftime('%Y%m%d-%H%M%S')}")
    progress = not args.no_progress and sys.stderr.isatty()
    trainer = Trainer(model, optimizer, loss_fn, train_loader, val_loader, schedule, run_dir=run_dir,
                      progress=progress, log=lambda record: print(describe(record, args.epochs), flush=True))
    print(f"CIFAR-10 CNN (width {args.width}): {sum(p.size for p in model.parameters()):,} parameters; "
          f"{len(train[1]):,} training, {len(val[1]):,} validation, {len(test[1]):,} test images; {args.epochs} epochs "
          f"of {len(train_loader)} batches of {args.batch_size}; run folder {run_dir}", flush=True)
    if args.resume:
        trainer.resume(args.resume)
        print(f"resumed from {args.resume} at epoch {trainer.epoch + 1}, batch {trainer.batch}", flush=True)
    split = time_split(model, loss_fn, optimizer, train_loader, 2 if args.quick else 5, run_dir)
    per_epoch = {phase: seconds * len(train_loader) for phase, seconds in split.items()}
    print("time per step: " + ", ".join(f"{phase} {seconds * 1e3:.1f} ms" for phase, seconds in split.items())
          + "; per epoch: " + ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in per_epoch.items())
          + f" (per-operation profile: {Path(run_dir) / 'profile.txt'})", flush=True)
    trainer.fit(args.epochs)
    if trainer.stop_requested:
        print(f"stopped; continue with: python milestones/{Path(__file__).name} --resume {run_dir / 'checkpoint.npz'}"
              + "".join(_rebuild_flags(argv)))
        return 130
    plot_accuracy_vs_time(trainer.history, Path(run_dir) / "accuracy_vs_time.png")
    result = None if args.skip_test else evaluate(model, test_loader.batches(0), loss_fn)
    wall = time.perf_counter() - started
    final = trainer.history[-1]
    summary = {"test_accuracy": result and result["accuracy"], "test_loss": result and result["loss"],
               "val_accuracy": final.get("val_accuracy"), "train_accuracy": final["train_accuracy"],
               "epochs": args.epochs, "wall_seconds": wall,
               "train_seconds": sum(r["epoch_seconds"] for r in trainer.history),
               "step_seconds": split, "epoch_seconds_split": per_epoch, "parameters": sum(p.size for p in model.parameters()),
               "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "command": " ".join(["python", *sys.argv]) if argv is None else None}
    (Path(run_dir) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    tested = "test accuracy not measured (--skip-test)" if result is None else \
        f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f})"
    print(f"{tested} after {args.epochs} epochs; validation {final.get('val_accuracy', float('nan')):.4f}; "
          f"wall time {wall:.0f} s ({summary['train_seconds']:.0f} s training)", flush=True)
    print(f"curves: {Path(run_dir) / 'curves.png'}, {Path(run_dir) / 'accuracy_vs_time.png'}  "
          f"metrics: {Path(run_dir) / 'metrics.jsonl'}")
    return 0


def _rebuild_flags(argv):
    """The original command-line flags, except --resume/--run-dir, so a resumed run has the same configuration."""
    flags, skip = [], False
    for token in (argv if argv is not None else sys.argv[1:]):
        if skip:
            skip = False
            continue
        if token in ("--resume", "--run-dir"):
            skip = True
            continue
        flags.append(" " + token)
    return flags


if __name__ == "__main__":
    sys.exit(main())
