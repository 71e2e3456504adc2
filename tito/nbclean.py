"""Git's clean filter for notebooks (.gitattributes): a notebook on stdin, cleaned as `nbdev_clean` cleans
files (settings.ini's keys), on stdout, so commits stay clean whatever saved the file. nbdev 2.4.14's own
`nbdev_clean --stdin` cannot write to stdout. Install: `git config filter.nbdev-clean.clean
'.venv/bin/python -m tito.nbclean'` (scripts/setup.sh does, in a clone's main worktree)."""
import sys

from execnb.nbio import loads, nb2str
from nbdev.clean import clean_nb
from nbdev.config import get_config


def main():
    config = get_config()
    notebook = loads(sys.stdin.buffer.read().decode("utf-8"))
    clean_nb(notebook, config.clear_all, config.get("allowed_metadata_keys").split(),
             config.get("allowed_cell_metadata_keys").split(), config.clean_ids)
    sys.stdout.buffer.write(nb2str(notebook).encode("utf-8"))


if __name__ == "__main__":
    main()
