"""The bridge between CuPy arrays and the ``numba.cuda`` kernels of ``kernels/``: arguments as Numba views of
CuPy's memory, results back as CuPy arrays, Numba's allocations served from CuPy's pool.  Used by
``backend.get_kernel`` only; the CuPy module is passed in (``cupy``: a function returning it), so this module
imports nothing of tinyconv.

It also holds the context-local TF32 setting of the CUDA matrix products (``tinyconv.cuda.allow_tf32``) and
applies it to cuBLAS around each GEMM-bearing kernel (``gemm_precision``).
"""
import contextvars
import importlib
import os

import numpy as np


_SCALARS = (int, float, bool, np.generic)


def cuda_kernel(fn, cupy):
    """Wrap a ``numba.cuda`` kernel function so that it takes and returns CuPy arrays, without copies or waits.

    - Arguments: each CuPy array becomes a Numba view of the same device memory
      (``numba.cuda.as_cuda_array(a, sync=False)``).  Passing CuPy arrays straight to a Numba kernel would
      also work, but Numba then synchronises the host with the array's stream once per argument per launch.
    - Streams: Numba launches on the legacy default stream, which is CuPy's current stream unless the user
      picked another.  Work on one stream runs in order, so no wait is needed; under another CuPy stream the
      call waits for that stream before the kernel and for the kernel after it (correct, slower).
    - Memory: the kernels' outputs are allocated by Numba, which draws them from CuPy's memory pool
      (``use_cupy_allocator_for_numba``), so one pool serves both libraries and is reused step after step.
    - Results: Numba device arrays become CuPy arrays viewing the same memory (``as_cuda_output``).
    """
    numba_cuda = []  # numba.cuda, imported on the first call (importing it is slow, and sets up the simulator)

    def run(*args, **kwargs):
        if not numba_cuda:
            from numba import cuda
            use_cupy_allocator_for_numba(cupy)
            numba_cuda.append(cuda)
        cuda = numba_cuda[0]
        cp = cupy()
        other_stream = cp is not None and cp.cuda.get_current_stream().ptr != 0
        if other_stream:
            cp.cuda.get_current_stream().synchronize()
        # a kernel's many size arguments are plain numbers: no interface lookup for them
        args = [a if isinstance(a, _SCALARS) or not hasattr(a, "__cuda_array_interface__")
                else cuda.as_cuda_array(a, sync=False) for a in args]
        out = as_cuda_output(fn(*args, **kwargs), cp)
        if other_stream:
            cuda.default_stream().synchronize()
        return out
    run.__name__ = run.__qualname__ = getattr(fn, "__name__", "cuda_kernel")
    run.__doc__ = fn.__doc__
    return run


def as_cuda_output(y, cp):
    """Wrap what a CUDA kernel returned (Numba device arrays) as CuPy arrays viewing the same memory.

    ``cupy.asarray`` reads the ``__cuda_array_interface__`` and keeps the Numba array alive as the owner;
    nothing is copied and, the arrays carrying no stream, nothing waits.
    """
    if isinstance(y, tuple):
        return tuple(as_cuda_output(v, cp) for v in y)
    if y is None:  # an in-place kernel (the optimiser steps)
        return None
    if type(y).__module__.startswith("cupy") or isinstance(y, np.ndarray):
        return y
    return cp.asarray(y)


_numba_allocator = None  # None: not set up yet; else 'cupy' or 'numba'


def use_cupy_allocator_for_numba(cupy):
    """Make Numba allocate device memory from CuPy's memory pool (an External Memory Management plugin).

    Called before the first CUDA kernel runs.  Without it, every kernel output is a fresh ``cudaMalloc``,
    freed by Numba in batches with ``cudaFree`` (which waits for the whole device), in a second heap next to
    CuPy's pool, which never hands cached blocks back to it: slower, and an out-of-memory error can strike
    while CuPy holds gigabytes of free blocks.  The plugin must be chosen before Numba creates its CUDA
    context; if something used ``numba.cuda`` first, or ``TINYCONV_NUMBA_ALLOCATOR=numba`` is set, Numba keeps
    its own allocator (correct, only slower): the plugin applies to contexts created after it is set.  Returns ``'cupy'`` or ``'numba'``.
    """
    global _numba_allocator
    if _numba_allocator is None:
        from numba import config, cuda
        _numba_allocator = "numba"
        if not config.ENABLE_CUDASIM and os.environ.get("TINYCONV_NUMBA_ALLOCATOR", "cupy") == "cupy":
            cuda.set_memory_manager(cupy_memory_manager(cupy()))  # Numba's CUDA simulator has no allocators
            _numba_allocator = "cupy"
    return _numba_allocator


def cupy_memory_manager(cp):
    """The EMM plugin class that serves Numba's device allocations from CuPy's (``cp``) current memory pool."""
    import ctypes
    import weakref

    from numba import cuda
    from numba.cuda.cudadrv import driver

    class CuPyNumbaMemoryManager(cuda.GetIpcHandleMixin, cuda.HostOnlyCUDAMemoryManager):
        """Numba's device memory from CuPy's pool: each allocation is a ``cupy.cuda.MemoryPointer`` kept
        alive until Numba's pointer to it dies, then returned to the pool."""

        def initialize(self):
            pass

        def memalloc(self, size):
            mem = cp.cuda.alloc(size)
            address = int(mem.ptr)
            # recent numba-cuda releases always talk to the driver through NVIDIA's cuda-python bindings and have no
            # USE_NV_BINDING switch; Numba's older built-in numba.cuda may use ctypes instead
            ptr = (driver.binding.CUdeviceptr(address) if getattr(driver, "USE_NV_BINDING", True)
                   else ctypes.c_uint64(address))
            self.allocations[address] = mem
            allocations = self.allocations
            return cuda.MemoryPointer(weakref.proxy(self.context), ptr, size,
                                      finalizer=lambda: allocations.pop(address, None))

        def get_memory_info(self):
            free, total = cp.cuda.runtime.memGetInfo()
            return cuda.MemoryInfo(free=free, total=total)

        @property
        def interface_version(self):
            return 1

    return CuPyNumbaMemoryManager


# -- TF32 in the CUDA matrix products ---------------------------------------------------------------------
# Kernels whose CUDA implementations run cuBLAS products: backend.get_kernel wraps them in gemm_precision.
GEMM_KERNELS = frozenset({"conv2d_forward", "conv2d_backward", "linear_forward", "linear_backward", "matmul"})

# context-local like grad mode: allowing TF32 in one thread (or asyncio task) never changes another's products
_allow_tf32 = contextvars.ContextVar("tinyconv_cuda_allow_tf32", default=False)

_COMPUTE_TYPE_DEFAULT, _COMPUTE_TYPE_TF32 = 1, 7  # cupy._core._routines_linalg's COMPUTE_TYPE_* values
_CUBLAS_DEFAULT_MATH, _CUBLAS_TF32_TENSOR_OP_MATH = 0, 3  # cuBLAS's cublasMath_t values


def tf32_allowed():
    """Whether the CUDA matrix products of this thread/context may use TF32 tensor cores (default False)."""
    return _allow_tf32.get()


def set_tf32_allowed(allowed):
    """Set the TF32 permission in this thread/context; returns the token that ``reset_tf32_allowed`` takes."""
    return _allow_tf32.set(bool(allowed))


def reset_tf32_allowed(token):
    _allow_tf32.reset(token)


def _cublas_controls():
    """CuPy's switches: the float32 compute type of its 2-D products (``cupy._core._routines_linalg``), and the
    math mode of this thread's cuBLAS handle, which its batched (3-D) products follow."""
    linalg = importlib.import_module("cupy._core._routines_linalg")
    cublas = importlib.import_module("cupy_backends.cuda.libs.cublas")
    device = importlib.import_module("cupy.cuda.device")
    return linalg, cublas, device


def apply_gemm_precision(tf32):
    """Put cuBLAS (through CuPy) in the float32 mode asked for: TF32 tensor cores or full FP32.

    CuPy has two switches, both set here: ``set_compute_type(float32, COMPUTE_TYPE_TF32)`` makes its 2-D
    products (``cupy.dot``, 2-D ``matmul``) call ``cublasGemmEx`` with ``CUBLAS_COMPUTE_32F_FAST_TF32``; its
    batched products (``gemmStridedBatchedEx`` with the legacy ``CUDA_R_32F`` compute type) follow the handle's
    math mode, ``CUBLAS_TF32_TENSOR_OP_MATH``.  Returns a function that puts back what was changed (a no-op when
    nothing was), so CuPy code outside tinyconv keeps its own setting.
    """
    linalg, cublas, device = _cublas_controls()
    want_type = _COMPUTE_TYPE_TF32 if tf32 else _COMPUTE_TYPE_DEFAULT
    want_mode = getattr(cublas, "CUBLAS_TF32_TENSOR_OP_MATH", _CUBLAS_TF32_TENSOR_OP_MATH) if tf32 else \
        getattr(cublas, "CUBLAS_DEFAULT_MATH", _CUBLAS_DEFAULT_MATH)
    old_type = linalg.get_compute_type(np.float32)
    handle = device.get_cublas_handle()
    old_mode = cublas.getMathMode(handle)
    if old_type != want_type:
        linalg.set_compute_type(np.float32, want_type)
    if old_mode != want_mode:
        cublas.setMathMode(handle, want_mode)

    def restore():
        if old_type != want_type:
            linalg.set_compute_type(np.float32, old_type)
        if old_mode != want_mode:
            cublas.setMathMode(handle, old_mode)
    return restore


def gemm_precision(fn):
    """Wrap a GEMM-bearing CUDA kernel so that its cuBLAS products run in this context's TF32 setting.

    Default (TF32 not allowed) costs two reads per call when CuPy is in its own default state; the setting is
    restored after the call, so CuPy's own products outside tinyconv keep ``CUPY_TF32``'s choice.  CuPy's
    compute type is one per process: two threads running products at the same moment with different settings
    may see each other's (the handle's math mode is per thread).
    """
    def run(*args, **kwargs):
        restore = apply_gemm_precision(_allow_tf32.get())
        try:
            return fn(*args, **kwargs)
        finally:
            restore()
    run.__name__ = run.__qualname__ = getattr(fn, "__name__", getattr(getattr(fn, "func", None), "__name__", "gemm"))
    run.__doc__ = getattr(fn, "__doc__", None)
    return run
