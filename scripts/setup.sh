# Sourced by the other scripts: a project virtualenv with everything installed (idempotent, never prompts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Debian packages: bubblewrap sandboxes grading (tito autograde refuses to run unsandboxed without
# --no-sandbox); dataset-fashion-mnist gives the IDX loader's test real files. Installed when root, else named.
missing=""
command -v bwrap >/dev/null || missing="$missing bubblewrap"
[ -d /usr/share/datasets/fashion-mnist ] || missing="$missing dataset-fashion-mnist"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing Debian packages:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q $missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; }
    else
        echo "note: install these Debian packages for the full test suite:$missing (sudo apt-get install$missing)" >&2
    fi
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "== installing tinytorch, tito and the course toolchain into .venv"
    # torch==2.13.0 is the CPU build on disk; an unpinned torch would pull a multi-GB CUDA build.
    if ! pip install --disable-pip-version-check -e '.[dev,torch,text]' > .venv/install.log 2>&1; then
        cat .venv/install.log >&2
        exit 1
    fi
    touch "$stamp"
fi
