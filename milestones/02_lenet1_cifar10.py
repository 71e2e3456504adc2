"""Milestone 2, LeNet-1 (LeCun et al., 1989) on CIFAR-10.

The first convolutional network trained by backpropagation read handwritten ZIP codes with 4 and then
12 feature maps of 5x5 filters, average subsampling and tanh squashing, about 2,600 weights. Here it is
built from the TinyTorch you wrote, kept as it was except for 3 input channels and 32x32 images:

    Conv 3->4 5x5 -> tanh -> AvgPool 2 -> Conv 4->12 5x5 -> tanh -> AvgPool 2 -> Flatten (300) -> Linear 10
                                                                                   (4,526 parameters)

trained with SGD + momentum, warm-up + cosine schedule, random flips and crops (modules 06-08, 10).
Model selection uses 5,000 training images held out for validation; the 10,000 test images are
evaluated once, at the end. Outputs go to milestones/runs/<run>/ (metrics.jsonl, curves.png,
checkpoint.npz, best.npz, summary.json); Ctrl-C saves a checkpoint that --resume continues.

    python milestones/02_lenet1_cifar10.py                # the full run
    python milestones/02_lenet1_cifar10.py --quick        # smoke test on a small slice
    python milestones/02_lenet1_cifar10.py --resume milestones/runs/<run>/checkpoint.npz
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lenet  # noqa: E402  (the LeNet milestones' shared run)

DEFAULTS = {"epochs": 30, "lr": 0.05, "weight_decay": 1e-4, "crop_padding": 2}


def build_lenet1(dtype=np.float32):
    from tinytorch.nn.conv import AvgPool2d, Conv2d
    from tinytorch.nn.layers import Flatten, Linear, Sequential, Tanh
    return Sequential(Conv2d(3, 4, 5, dtype=dtype), Tanh(), AvgPool2d(2),
                      Conv2d(4, 12, 5, dtype=dtype), Tanh(), AvgPool2d(2), Flatten(),
                      Linear(300, 10, dtype=dtype))


def main(argv=None):
    return _lenet.run("lenet1_cifar10", "LeNet-1", build_lenet1, __doc__, DEFAULTS, argv)


if __name__ == "__main__":
    sys.exit(main())
