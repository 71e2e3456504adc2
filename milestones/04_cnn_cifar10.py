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
profile of those steps); a --quick run drops its checkpoints when it finishes. Ctrl-C stops cleanly after
saving a checkpoint and prints the command that resumes it.

    bash scripts/milestone.sh 04_cnn_cifar10            # the full run
    bash scripts/milestone.sh 04_cnn_cifar10 --quick    # smoke test on a small slice (well under a minute)
    bash scripts/milestone.sh 04_cnn_cifar10 --resume milestones/runs/<run>/checkpoint.npz
    python milestones/04_cnn_cifar10.py ...             # the same, inside the activated .venv
"""
import sys
import time
from pathlib import Path

import numpy as np

from _common import (MilestoneError, cifar10_start, cifar10_trainer, finish, milestone_parser, parse,
                     resume, run)

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


def parse_args(argv=None):
    parser = milestone_parser(__doc__, epochs=7, batch_size=256,
                              quick="1,024 training, 256 validation and 256 test images, width 8, batches of 64, "
                                    "2 epochs")
    parser.add_argument("--width", type=int, default=16, help="channels of the first convolution (default 16)")
    parser.add_argument("--lr", type=float, default=0.2, help="peak learning rate of SGD (default 0.2)")
    parser.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum (default 0.9)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up, then cosine decay to 0")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--crop-padding", type=int, default=2,
                        help="random translation by up to this many pixels (pad and crop; 0: off; default 2)")
    parser.add_argument("--no-flip", action="store_true", help="turn off random horizontal flips")
    parser.add_argument("--train-size", type=int, help="train on only the first N images of the training split "
                        "(short model-selection runs; default: all 45,000)")
    given = argv if argv is not None else sys.argv[1:]
    args = parse(parser, argv, train_size=50_000, quick_epochs=2)
    if args.quick:
        args.width = args.width if "--width" in given else 8
        args.batch_size = args.batch_size if "--batch-size" in given else 64
    for name in ("width", "train_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise MilestoneError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.label_smoothing < 1:
        raise MilestoneError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    return args


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


def main(argv=None):
    args = parse_args(argv)
    from tinytorch.optim import SGD

    # a --quick run: 1,024, 256 and 256 images; drop_last: a last batch of one image has no batch statistics
    started, data, loaders = cifar10_start(args, quick_sizes=(1024, 256, 256), train_size=args.train_size,
                                           eval_batch_size=500, drop_last=True)
    model = build_cnn(args.width)
    loss_fn = smoothed_cross_entropy(args.label_smoothing)
    optimizer = SGD(model.parameters(), lr=args.lr, momentum=args.momentum, nesterov=True, weight_decay=args.weight_decay)
    trainer, run_dir = cifar10_trainer(args, "cnn_cifar10", f"CNN (width {args.width})", model, optimizer, loss_fn,
                                       data, loaders)
    train_loader = loaders[0]
    resume(trainer, args)
    split = time_split(model, loss_fn, optimizer, train_loader, 2 if args.quick else 5, run_dir)
    per_epoch = {phase: seconds * len(train_loader) for phase, seconds in split.items()}
    print("time per step: " + ", ".join(f"{phase} {seconds * 1e3:.1f} ms" for phase, seconds in split.items())
          + "; per epoch: " + ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in per_epoch.items())
          + f" (per-operation profile: {Path(run_dir) / 'profile.txt'})", flush=True)
    trainer.fit(args.epochs)
    return finish(__file__, args, argv, trainer, loss_fn, loaders[2], started,
                  extra=lambda: {"step_seconds": split, "epoch_seconds_split": per_epoch,
                                 "parameters": sum(p.size for p in model.parameters())},
                  after_fit=lambda: plot_accuracy_vs_time(trainer.history, Path(run_dir) / "accuracy_vs_time.png"),
                  curves=("curves.png", "accuracy_vs_time.png"))


if __name__ == "__main__":
    sys.exit(run(main))
