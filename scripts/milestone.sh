#!/usr/bin/env bash
# The main job: train a milestone on real data with tinytorch. `bash scripts/milestone.sh [NAME] [options]`:
# NAME is a script of milestones/ (default 01_mlp_cifar10, the MLP on CIFAR-10); the options go to it (--help).
# Installs only what the milestones need (TINYTORCH_EXTRAS=milestone: see scripts/setup.sh).
TINYTORCH_EXTRAS=milestone source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
name=01_mlp_cifar10
if [ $# -gt 0 ] && [ -f "milestones/$1.py" ]; then
    name="$1"
    shift
fi
exec python "milestones/$name.py" "$@"
