"""The grading kernel's sandbox: bubblewrap, so a submission sees the Python it needs and nothing of the course.

The kernel runs in new user, pid, network, IPC, UTS and mount namespaces as uid 65534. Its file system
is an allowlist: the system's `/usr`, a few `/etc` files, the Python installation and virtual environment
(read-only), its own grading copy of the package (read-only), a working folder in a size-capped tmpfs
holding the submission's data files (read-only), and the host folder of the kernel's connection file and
sockets. The course root (source notebooks, the reference package, other submissions, the gradebook) is
simply not there. There is no network, so the kernel talks to nbgrader over Unix sockets (`ipc`
transport) in that bound folder. RLIMIT_AS caps its memory, so exhausting it is a `MemoryError` in the
submission rather than in the machine, and RLIMIT_FSIZE caps any file it writes. When the kernel ends or
is killed, everything it started dies with its pid namespace.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tito.errors import TitoError

KERNEL_NAME = "tinytorch-sandbox"
NOBODY = "65534"
# Without fonts/, fontconfig complains on stderr when matplotlib saves a figure, and nbgrader scores a
# graded cell that wrote to stderr 0.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "localtime", "fonts")
WORKDIR = "/tmp/work"  # the kernel's working folder, inside the sandbox's own /tmp
WRITABLE_BYTES = 256 * 2**20  # the sandbox's /tmp (a tmpfs), and any one file the kernel writes
# Each kernel starts with an empty HOME, so matplotlib builds its font cache on first use; when that takes more
# than 5 s (a loaded machine) it says so on stderr, and nbgrader would score the cell running it 0.
QUIET_FONT_CACHE = "--IPKernelApp.exec_lines=__import__('logging').getLogger('matplotlib.font_manager').setLevel(40)"
# Sets the caps, then becomes the kernel (arguments pass through).
LAUNCH = ("import os, resource, sys; cap = int(os.environ.pop('TITO_MEMORY_BYTES')); "
          "resource.setrlimit(resource.RLIMIT_AS, (cap, cap)); "
          f"resource.setrlimit(resource.RLIMIT_FSIZE, ({WRITABLE_BYTES}, {WRITABLE_BYTES})); "
          f"os.execv(sys.executable, [sys.executable, '-P', '-m', 'ipykernel_launcher', {QUIET_FONT_CACHE!r}, *sys.argv[1:]])")


def interpreter_paths():
    """Host folders the interpreter needs besides /usr: its installation and its virtual environment."""
    return sorted({p for p in (sys.base_prefix, sys.prefix) if p != "/usr" and not p.startswith("/usr/")})


def _system_binds():
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for prefix in interpreter_paths():
        args += ["--ro-bind", prefix, prefix]
    return args


def command(files, readable=(), writable=(), env=None):
    """The bwrap argv (up to `--`) for a process that sees only the system, Python and `readable`.

    Its working folder is WORKDIR in a size-capped tmpfs, with the entries of `files` in it read-only;
    `writable` host folders are bound read-write (the kernel's sockets need one).
    The private /tmp is mounted first and every host folder bound after it, so a project, virtualenv or
    $TMPDIR under /tmp stays visible (bound over the tmpfs) instead of being hidden by it.
    """
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--uid", NOBODY, "--gid", NOBODY,
            "--size", str(WRITABLE_BYTES), "--tmpfs", "/tmp", "--dir", WORKDIR,
            *_system_binds(), "--dev", "/dev", "--proc", "/proc"]
    for entry in sorted(Path(files).iterdir()):
        args += ["--ro-bind", str(entry), f"{WORKDIR}/{entry.name}"]
    for path in readable:
        args += ["--ro-bind", str(path), str(path)]
    for path in writable:
        args += ["--bind", str(path), str(path)]
    args += ["--chdir", WORKDIR, "--clearenv"]
    base = {"HOME": "/tmp", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for key, value in {**base, **(env or {})}.items():
        args += ["--setenv", key, str(value)]
    return args + ["--"]


def write_kernelspec(jupyter_dir, env, memory_bytes, jail=None):
    """Write the grading kernelspec (named KERNEL_NAME) under `jupyter_dir/kernels/`; returns its name.

    `jail` (files, readable, writable: see `command`) puts the kernel in the sandbox; without it the kernel
    only gets the caps and `env`. Interrupts go as messages: a signal would end bwrap, not the running cell.
    `-P` keeps the working folder off sys.path while the kernel starts, so a submitted `resource.py`
    cannot replace the module that sets the cap.
    """
    env = {**env, "TITO_MEMORY_BYTES": str(memory_bytes)}
    kernel = [sys.executable, "-P", "-c", LAUNCH, "-f", "{connection_file}"]
    spec = {"argv": command(env=env, **jail) + kernel} if jail else {"argv": kernel, "env": env}
    spec.update(display_name="TinyTorch grading kernel", language="python", interrupt_mode="message",
                metadata={"debugger": False})
    folder = Path(jupyter_dir) / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return KERNEL_NAME


def _probe(program):
    """Run `program` in an empty sandbox; the last line bubblewrap or the program wrote on failure, else None."""
    with tempfile.TemporaryDirectory(prefix="tito-probe-") as files:
        probe = subprocess.run([*command(files), *program], capture_output=True, text=True)
    return None if probe.returncode == 0 else (probe.stderr.strip().splitlines() or ["no output"])[-1]


def require():
    """Fail loudly, with the real cause and its fix, when grading cannot be sandboxed here.

    Two probes tell the causes apart: a sandbox running `true` from /usr shows that bubblewrap can create
    its namespaces; one running the interpreter shows that the interpreter and its environment are visible.
    """
    if not shutil.which("bwrap"):
        raise TitoError("bubblewrap (bwrap) is not installed, so submissions cannot be sandboxed: "
                        "`apt-get install -y bubblewrap`, or pass --no-sandbox to grade without one (unsafe)")
    true = next(p for p in ("/usr/bin/true", "/bin/true") if Path(p).exists())
    failure = _probe([true])
    if failure:
        raise TitoError(f"bubblewrap cannot create its sandbox here ({failure}): enable unprivileged user "
                        "namespaces (sysctl kernel.unprivileged_userns_clone=1; in a container, a seccomp or "
                        "AppArmor profile that allows them), or pass --no-sandbox to grade without one (unsafe)")
    failure = _probe([sys.executable, "-c", "import ipykernel"])
    if failure:
        raise TitoError(f"the sandbox starts, but {sys.executable} cannot run in it ({failure}); it sees /usr and "
                        f"{', '.join(interpreter_paths()) or 'nothing else'}: install Python and its virtualenv "
                        "there, or pass --no-sandbox to grade without one (unsafe)")
