"""``tinyconv.cuda``: is a GPU usable?  Never raises on a machine without CuPy or a GPU."""
from . import backend

_available = None


def is_available():
    """True when CuPy imports and sees at least one CUDA device."""
    global _available
    if _available is None:
        cp = backend.cupy_or_none()
        try:
            _available = cp is not None and cp.cuda.runtime.getDeviceCount() > 0
        except Exception:  # no driver, no device, broken CUDA install
            _available = False
    return _available


def device_count():
    """The number of visible CUDA devices (0 without CuPy or a GPU)."""
    return backend.cupy_or_none().cuda.runtime.getDeviceCount() if is_available() else 0


def synchronize():
    """Wait for all GPU work to finish (for timing); a no-op without a GPU."""
    if is_available():
        backend.cupy_or_none().cuda.Device().synchronize()
