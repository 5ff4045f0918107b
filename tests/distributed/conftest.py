"""Fixtures of the distributed tests.  They run in the single-process suite as a world of one rank (MPI's
singleton start), and in CI under ``mpiexec -n 2 python -m pytest tests/distributed``; each test module
skips cleanly where mpi4py is not installed.

Nothing may hang: every test runs under a watchdog (``faulthandler.dump_traceback_later``) that prints every
thread's stack (on the terminal, past pytest's capture) and exits the process after
``TINYCONV_DIST_TEST_TIMEOUT`` seconds (default 300); mpiexec then ends the other ranks.
"""
import faulthandler
import os
import sys

import pytest

TIMEOUT = float(os.environ.get("TINYCONV_DIST_TEST_TIMEOUT", "300"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gpu"))  # fake_cupy


_REAL_STDERR = []


def _real_stderr(config):
    """A file on the terminal's stderr: pytest's fd capture swaps fd 2 for a temporary file, which nobody reads
    once the watchdog has ended the process (its saved descriptor is private API: fall back to sys.stderr)."""
    if not _REAL_STDERR:
        capman = config.pluginmanager.getplugin("capturemanager")
        err = getattr(getattr(capman, "_global_capturing", None), "err", None)
        fd = getattr(err, "targetfd_save", None)
        _REAL_STDERR.append(os.fdopen(os.dup(fd), "w") if isinstance(fd, int) else sys.stderr)
    return _REAL_STDERR[0]


@pytest.fixture(autouse=True)
def _watchdog(request):
    out = _real_stderr(request.config)
    faulthandler.dump_traceback_later(TIMEOUT, exit=True, file=out)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session")
def dist():
    """``tinyconv.distributed``, initialised (the test's excepthook is left to pytest)."""
    pytest.importorskip("mpi4py")
    import tinyconv.distributed as dist
    dist.init(excepthook=False)
    return dist


@pytest.fixture
def two_ranks(dist):
    """Skip unless run on exactly two ranks (``mpiexec -n 2``)."""
    if dist.get_world_size() != 2:
        pytest.skip("needs mpiexec -n 2")
    return dist


@pytest.fixture
def shared_tmp(dist, tmp_path):
    """A directory every rank sees: rank 0's ``tmp_path``, sent to the others."""
    from mpi4py import MPI
    return MPI.COMM_WORLD.bcast(str(tmp_path), root=0)
