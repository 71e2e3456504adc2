#!/usr/bin/env bash
# The full test suite: what CI runs (.ci/run). Installs what it needs; safe with no stdin.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export TINYTORCH_SMALL=1   # systems sections measure at small sizes; nothing is skipped

echo "== tito build --check: notebooks clean and well-formed, tinytorch/ equals a fresh export"
tito build --check

echo "== every module notebook, top to bottom, against the exported package"
timeout 1800 nbdev_test --n_workers 2

echo "== pytest"
set +e
python -m pytest -q
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$status"
