"""Kernels that talk over Unix sockets (jupyter_client's `ipc` transport) instead of TCP ports.

The grading sandbox has no network, and a kernel on TCP without CurveZMQ keys warns on every start
that anything on the machine could connect to it. A socket's path holds at most 107 bytes, so the
folder holding them must have a short path.
"""
import tempfile
from pathlib import Path

from traitlets.config import Config

from tito.errors import TitoError

FOLDER_BYTES = 90  # room for the names jupyter_client adds (k-ipc-NNNNN) within 107 bytes


def socket_folder(preferred):
    """A new, empty folder for a kernel's connection file and sockets: `preferred` when its path is short
    enough, else a private folder in /tmp (or /dev/shm). The caller removes it."""
    preferred = Path(preferred)
    if len(str(preferred).encode()) <= FOLDER_BYTES:
        preferred.mkdir(parents=True)
        return preferred
    for short in ("/tmp", "/dev/shm", "/var/tmp"):
        try:
            return Path(tempfile.mkdtemp(prefix="tito-", dir=short))
        except OSError:
            continue
    raise TitoError(f"no folder with a path short enough for a kernel's sockets ({preferred} is too long; "
                    "set TMPDIR to a shorter path)")


def ipc_config(folder, config=None):
    """`config` (a new traitlets Config by default) with kernels on Unix sockets in `folder`."""
    config = config if config is not None else Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.connection_file = str(Path(folder) / "k.json")
    return config
