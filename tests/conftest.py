"""Shared test fixtures: kernel backends, the optional PyTorch oracle, Hypothesis profiles."""
import os

import numpy as np

if "NUMBA_ENABLE_CUDASIM" not in os.environ:
    # Without a GPU, numba.cuda kernels run on Numba's CUDA simulator, so their logic is tested here too.
    # It must be chosen before Numba is first imported.
    try:
        import cupy
        _gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        _gpu = False
    if not _gpu:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import pytest
from hypothesis import HealthCheck, settings

import tinyconv
from tinyconv import backend

# Tests never touch the network: datasets that are not on disk fail instead of downloading.
os.environ.setdefault("TINYCONV_OFFLINE", "1")

# Deterministic, bounded property tests: the same examples on every run, no flaky deadlines.
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=["numpy", "numba"])
def kernels(request):
    """Run a test once on the NumPy reference kernels and once on the Numba kernels."""
    with backend.use_kernels(request.param):
        yield request.param


@pytest.fixture
def torch():
    """PyTorch, the optional oracle; the test is skipped cleanly where it is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _seed():
    tinyconv.manual_seed(0)
    np.random.seed(0)
    yield
