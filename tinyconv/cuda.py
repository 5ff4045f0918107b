"""``tinyconv.cuda``: is a GPU usable?  Never raises on a machine without CuPy or a GPU."""
from . import backend


def is_available():
    """True when CuPy imports and sees at least one CUDA device."""
    return backend.cuda_is_available()


def device_count():
    """The number of visible CUDA devices (0 without CuPy or a GPU)."""
    return backend.cupy_or_none().cuda.runtime.getDeviceCount() if is_available() else 0


def synchronize():
    """Wait for all GPU work to finish (for timing); a no-op without a GPU."""
    if is_available():
        backend.cupy_or_none().cuda.Device().synchronize()
