"""``tinyconv.cuda``: is a GPU usable, and how its matrix products round.  Never raises on a machine without
CuPy or a GPU.

TF32, as PyTorch offers it (``torch.backends.cuda.matmul.allow_tf32``, default off): float32 matrix products on
the GPU may round their inputs to TF32 (10 explicit mantissa bits, as in float16, with float32's exponent range)
and run on tensor cores, several times faster, with a relative error around 1e-3 instead of 1e-7
(``docs/gpu.md``).  In tinyconv the permission is context-local, like ``no_grad``: it covers the products of
convolutions (forward and backward), ``linear`` and ``matmul`` run in this thread or asyncio task::

    with tinyconv.cuda.allow_tf32():            # in a block
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    tinyconv.cuda.matmul.allow_tf32 = True      # or from here on, in this context (PyTorch's spelling)
"""
import contextlib

from . import backend, cuda_bridge


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


@contextlib.contextmanager
def allow_tf32(enabled=True):
    """Inside the block, in this thread/context only, float32 matrix products on the GPU may use TF32 tensor
    cores (``enabled=False``: they may not).  The CPU's products are unaffected."""
    token = cuda_bridge.set_tf32_allowed(enabled)
    try:
        yield
    finally:
        cuda_bridge.reset_tf32_allowed(token)


def is_tf32_allowed():
    """Whether TF32 is allowed here (``allow_tf32``, ``matmul.allow_tf32``); False by default."""
    return cuda_bridge.tf32_allowed()


class _Matmul:
    """``tinyconv.cuda.matmul.allow_tf32``: PyTorch's spelling of the setting; assigning it sets it in the current
    thread/context from here on (as ``tinyconv.set_grad_enabled(False)`` does for grad mode)."""

    @property
    def allow_tf32(self):
        return cuda_bridge.tf32_allowed()

    @allow_tf32.setter
    def allow_tf32(self, value):
        cuda_bridge.set_tf32_allowed(value)


matmul = _Matmul()
