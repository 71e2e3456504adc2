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
import sys

import numpy as np

from _common import cifar10_start, cifar10_trainer, finish, milestone_parser, parse, resume, run

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


def main(argv=None):
    args = parse_args(argv)
    from tinytorch.nn.losses import cross_entropy
    from tinytorch.optim import SGD

    started, data, loaders = cifar10_start(args)
    model = build_mlp(dropout=args.dropout)
    optimizer = SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    trainer, _ = cifar10_trainer(args, "mlp_cifar10", "MLP", model, optimizer, cross_entropy, data, loaders)
    resume(trainer, args)
    trainer.fit(args.epochs)
    return finish(__file__, args, argv, trainer, cross_entropy, loaders[2], started)


if __name__ == "__main__":
    sys.exit(run(main))
