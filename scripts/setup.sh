# Sourced by the other scripts: a project virtualenv (.venv) with what the calling script needs (idempotent, never
# prompts). TINYTORCH_EXTRAS=milestone (scripts/milestone.sh): NumPy, tqdm, Matplotlib and Pillow from PyPI. Otherwise
# (tests, demo): also Jupyter, nbgrader, nbdev, pytest, hypothesis, Dask, MPI (mpi4py, mpich), Hugging Face tokenizers and PyTorch 2.13.0 (CPU build) from PyPI,
# Playwright, and the Debian packages bubblewrap, dataset-fashion-mnist and chromium through apt-get when run as root.
# Every run also enables tito's web-UI extension (tito/webui.py) in the venv's Jupyter and creates the course's exchange.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${TINYTORCH_EXTRAS:-dev,torch,text}"
if [ "$extras" != milestone ]; then
    # bubblewrap sandboxes grading (tito autograde refuses to run unsandboxed without --no-sandbox);
    # dataset-fashion-mnist gives the IDX loader's test real files; chromium runs the web-UI test.
    # Installed when root, else named.
    missing=""
    command -v chromium >/dev/null || missing="$missing chromium"
    command -v bwrap >/dev/null || missing="$missing bubblewrap"
    [ -d /usr/share/datasets/fashion-mnist ] || missing="$missing dataset-fashion-mnist"
    if [ -n "$missing" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "== installing Debian packages with apt-get:$missing"
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y -q $missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; }
        else
            echo "note: install these Debian packages for the full test suite:$missing (sudo apt-get install$missing)" >&2
        fi
    fi
fi
if [ ! -x .venv/bin/python ]; then
    echo "== creating the virtualenv .venv"
    python3 -m venv .venv
fi
. .venv/bin/activate
stamp=".venv/.installed-${extras//,/-}"
full=.venv/.installed-dev-torch-text   # the full set includes everything the milestones need
if [ -f "$full" ] && [ ! pyproject.toml -nt "$full" ]; then
    stamp="$full"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    if [ "$extras" = milestone ]; then
        echo "== first run: installing tinytorch and what the milestones need (NumPy, tqdm, Matplotlib, Pillow) from PyPI into .venv"
    else
        echo "== first run: installing tinytorch, tito and the course toolchain (Jupyter, nbgrader, nbdev, pytest, Dask, MPI, tokenizers," \
             "PyTorch 2.13.0 CPU: about 1.4 GB) from PyPI into .venv; a few minutes"
    fi
    # torch==2.13.0 is the CPU build; an unpinned torch would pull a multi-GB CUDA build.
    if ! pip install --disable-pip-version-check -e ".[$extras]" > .venv/install.log 2>&1; then
        cat .venv/install.log >&2
        exit 1
    fi
    touch "$stamp"
    echo "== installed (log: .venv/install.log)"
fi
if [ "$extras" != milestone ]; then
    # Formgrader's Autograde and Generate Feedback run tito (tito/webui.py) in every JupyterLab of this venv.
    mkdir -p .venv/etc/jupyter/jupyter_server_config.d
    cp tito/jupyter_server_config.json .venv/etc/jupyter/jupyter_server_config.d/tito.json
    # nbgrader's exchange (nbgrader_config.py): every user may drop files in, only their owner removes them.
    mkdir -p course/exchange
    chmod 1777 course/exchange
fi
if [ "$extras" != milestone ] && git rev-parse --git-dir >/dev/null 2>&1; then
    # Commits of modules/ notebooks go through nbdev's cleaning (.gitattributes, tito/nbclean.py). Set here only in
    # a clone's main worktree: linked worktrees share its .git/config, so they are left to it.
    if [ "$(git rev-parse --git-dir)" = "$(git rev-parse --git-common-dir)" ] && ! git config --get filter.nbdev-clean.clean >/dev/null; then
        # Without the venv (deleted, or a linked worktree) the notebook passes through as it is; `tito build --check`
        # still refuses an unclean one.
        git config filter.nbdev-clean.clean 'if [ -x .venv/bin/python ]; then .venv/bin/python -m tito.nbclean; else cat; fi'
    fi
fi
