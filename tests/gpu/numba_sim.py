"""Numba's CUDA simulator as a consumer and producer of the CUDA array interface, for ``fake_cupy``.

``fake_cupy.install`` calls ``bridge`` (and ``reference_kernels`` with ``kernels='reference'``), so tinyconv's
``numba.cuda`` kernels run on fake CuPy arrays through tinyconv's real bridge (``tinyconv/cuda_bridge.py``).
"""
from fake_cupy import _from_cuda_array_interface, _record_sync, ndarray


def bridge(monkeypatch):
    """Give Numba's CUDA simulator what the real ``numba.cuda`` has and the simulator lacks:
    ``cuda.as_cuda_array(obj, sync)`` (a device-array view of any CUDA-array-interface object, no copy),
    ``cuda.default_stream()`` (its ``synchronize`` recorded) and a
    ``__cuda_array_interface__`` on its device arrays (so ``cupy.asarray`` can view kernel outputs)."""
    from numba import config, cuda
    if not config.ENABLE_CUDASIM:
        raise RuntimeError("numba_sim.bridge is for Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    def as_cuda_array(obj, sync=True):
        if sync:
            _record_sync("numba.as_cuda_array(sync=True)")
        return FakeCUDAArray(_from_cuda_array_interface(obj))

    def interface(self):
        a = self._ary
        return {"shape": a.shape, "typestr": a.dtype.str, "version": 3, "stream": None,
                "data": (a.ctypes.data if a.size else 0, False),
                "strides": None if a.flags.c_contiguous else a.strides}

    class DefaultStream:
        def synchronize(self):
            _record_sync("numba.default_stream.synchronize")

    monkeypatch.setattr(cuda, "as_cuda_array", as_cuda_array, raising=False)
    monkeypatch.setattr(cuda, "default_stream", DefaultStream, raising=False)
    monkeypatch.setattr(FakeCUDAArray, "__cuda_array_interface__", property(interface), raising=False)


def reference_kernels(monkeypatch):
    """Serve the CUDA kernels by their NumPy references (on the buffers the Numba views share), keeping the
    bridge (CuPy array -> Numba view -> kernel -> Numba array -> CuPy array): for tests of whole training steps,
    where the simulator (one Python thread per CUDA thread) would take minutes.  The ``_cuda`` kernels
    themselves are checked on the simulator by the op and kernel tests."""
    import tinyconv_kernels
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
    real_get = tinyconv_kernels.get

    def get(name, target):
        if target != "cuda" or tinyconv_kernels.is_composite(name):  # composites take CuPy arrays: kept as they are
            return real_get(name, target)
        real_get(name, target)  # a kernel with no CUDA twin raises here: its reference then runs on the CuPy arrays
        reference = real_get(name, "numpy")

        def kernel(*args, **kwargs):
            args = [a._ary if isinstance(a, FakeCUDAArray) else a for a in args]
            assert not any(isinstance(a, ndarray) for a in args), "a CuPy array reached a kernel unconverted"
            out = reference(*args, **kwargs)
            if out is None:  # an in-place kernel (the optimiser steps)
                return None
            return tuple(FakeCUDAArray(o) for o in out) if isinstance(out, tuple) else FakeCUDAArray(out)
        return kernel
    monkeypatch.setattr(tinyconv_kernels, "get", get)
