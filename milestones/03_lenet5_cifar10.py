"""Milestone 3, LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998) on CIFAR-10.

LeNet-5 read cheques for American banks: two convolution + subsampling stages and three fully connected
layers. Here it is built from the TinyTorch you wrote, in its common modern form (ReLU and max pooling,
as in ../shared/perf-anchors.md §3b) and adapted to 3 input channels:

    Conv 3->6 5x5 -> ReLU -> MaxPool 2 -> Conv 6->16 5x5 -> ReLU -> MaxPool 2 -> Flatten (400)
    -> Linear 120 -> ReLU -> Linear 84 -> ReLU -> Linear 10                       (62,006 parameters)

trained with SGD + momentum, warm-up + cosine schedule, weight decay, random flips and crops (modules
06-08, 10). Model selection uses 5,000 training images held out for validation; the 10,000 test images
are evaluated once, at the end. Outputs go to milestones/runs/<run>/ (metrics.jsonl, curves.png,
checkpoint.npz, best.npz, summary.json; a --quick run drops its checkpoints when it finishes);
Ctrl-C saves a checkpoint and prints the command that resumes it.

    bash scripts/milestone.sh 03_lenet5_cifar10                  # the full run (installs what it needs first)
    bash scripts/milestone.sh 03_lenet5_cifar10 --quick          # smoke test on a small slice
    bash scripts/milestone.sh 03_lenet5_cifar10 --resume milestones/runs/<run>/checkpoint.npz
    python milestones/03_lenet5_cifar10.py ...                   # the same, inside the activated .venv
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lenet import run_milestone  # noqa: E402  (the LeNet milestones' shared run)

DEFAULTS = {"epochs": 10, "lr": 0.05, "weight_decay": 5e-4, "crop_padding": 4}


def build_lenet5(dtype=np.float32):
    from tinytorch.nn.conv import Conv2d, MaxPool2d
    from tinytorch.nn.layers import Flatten, Linear, ReLU, Sequential
    return Sequential(Conv2d(3, 6, 5, dtype=dtype), ReLU(), MaxPool2d(2),
                      Conv2d(6, 16, 5, dtype=dtype), ReLU(), MaxPool2d(2), Flatten(),
                      Linear(400, 120, dtype=dtype), ReLU(), Linear(120, 84, dtype=dtype), ReLU(),
                      Linear(84, 10, dtype=dtype))


def main(argv=None):
    return run_milestone(__file__, __doc__, "lenet5_cifar10", "LeNet-5", build_lenet5, DEFAULTS, argv)


if __name__ == "__main__":
    sys.exit(main())
