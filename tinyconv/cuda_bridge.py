"""The bridge between CuPy arrays and the ``numba.cuda`` kernels of ``kernels/``: arguments as Numba views of
CuPy's memory, results back as CuPy arrays, Numba's allocations served from CuPy's pool.  Used by
``backend.get_kernel`` only; the CuPy module is passed in (``cupy``: a function returning it), so this module
imports nothing of tinyconv.
"""
import os

import numpy as np


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
    def run(*args, **kwargs):
        from numba import cuda
        use_cupy_allocator_for_numba(cupy)
        cp = cupy()
        other_stream = cp is not None and cp.cuda.get_current_stream().ptr != 0
        if other_stream:
            cp.cuda.get_current_stream().synchronize()
        args = [cuda.as_cuda_array(a, sync=False) if hasattr(a, "__cuda_array_interface__") else a
                for a in args]
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
