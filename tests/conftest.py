"""Shared test fixtures: the optional PyTorch oracle, and hypothesis profiles."""
import os

import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


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
