#!/usr/bin/env bash
# The main job: train the MLP milestone on real CIFAR-10 with tinytorch (extra arguments go to the script).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
python milestones/01_mlp_cifar10.py "$@"
