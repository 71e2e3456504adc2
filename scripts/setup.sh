# Sourced by the other scripts: a project virtualenv with everything installed (idempotent, never prompts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "== installing tinytorch, tito and the course toolchain into .venv"
    # torch==2.13.0 is the CPU build on disk; an unpinned torch would pull a multi-GB CUDA build.
    if ! pip install --disable-pip-version-check -e '.[dev,torch]' > .venv/install.log 2>&1; then
        cat .venv/install.log >&2
        exit 1
    fi
    touch "$stamp"
fi
