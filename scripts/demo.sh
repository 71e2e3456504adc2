#!/usr/bin/env bash
# Build the course and grade a demo class end to end in a scratch copy, then print the gradebook.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [[ " $* " != *" --no-sandbox "* ]]; then
    tito sandbox || exit   # before spending time on the build
fi
tito build
tito demo "$@"
