"""Shared test fixtures: the optional PyTorch oracle, and hypothesis profiles."""
import os
import signal

import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# Started in the background of a non-interactive shell (`cmd &` in a script), the run inherits SIGINT ignored,
# and so would every process the Ctrl-C tests start: they would test the launcher, not Ctrl-C. Python's own
# handler is reset to the default in each child on exec, so restoring it here restores it everywhere.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def torch():
    """PyTorch as an oracle: skipped where it is not installed, a failure under CI=true (where .ci/run installs it)."""
    try:
        import torch as torch_module
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("PyTorch is required under CI=true: pip install torch==2.13.0")
        pytest.skip("PyTorch not installed (pip install -e '.[torch]')")
    torch_module.set_default_dtype(torch_module.float64)
    return torch_module
