"""Pooling and LRN CUDA kernels compile for a real GPU, and float32 inputs compute in float32.

The simulator runs kernels as Python, so neither typing failures nor float64 promotion show there.  As in
test_depthwise_kernels.py, a subprocess (without the simulator) compiles every kernel to PTX with NVVM (no GPU
needed) and checks the float32 PTX has no f64 instruction.  The float64 PTX may hold f32 instructions: libdevice's
double pow tests the exponent's range in single precision, so it is only checked to compute in f64.
"""
import os
import subprocess
import sys

import pytest

_PTX = """
import types as pytypes
import numpy as np
import numba.cuda.dispatcher as dispatcher
from numba import cuda, types
from tinyconv_kernels import lrn as L, pooling_cuda as P

# device functions are compiled for the current device's compute capability: stand in for the absent GPU
dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(8, 0))
i64, b = types.int64, types.boolean
for dt in (types.float32, types.float64):
    a = lambda nd, t=dt: types.Array(t, nd, "C")
    s = np.dtype(str(dt)).str
    sigs = [(P._max_pool2d_forward_kernel, (i64, a(4), a(4), a(4, i64)) + (i64,) * 8),
            (P._max_pool2d_backward_kernel, (i64, a(4), a(4, i64), a(4))),
            (P._zero_kernel, (i64, a(1))),
            (P._avg_pool2d_forward_kernel(s), (i64, a(4), a(4)) + (i64,) * 6 + (b, i64)),
            (P._avg_pool2d_backward_kernel(s), (i64, a(4), a(4)) + (i64,) * 6 + (b, i64)),
            (L._lrn_forward_kernel, (i64, a(3), a(3), a(3), i64) + (dt,) * 4),
            (L._lrn_backward_kernel, (i64, a(3), a(3), a(3), a(3), i64) + (dt,) * 4)]
    for kernel, sig in sigs:
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(8, 0))
        name = kernel.py_func.__qualname__
        if dt == types.float32:
            assert ".f64" not in ptx, (name, "float32 input computes in float64")
        elif name.split(".")[0] not in ("_max_pool2d_backward_kernel", "_zero_kernel"):
            assert ".f64" in ptx, (name, "float64 input does not compute in float64")
"""


@pytest.mark.slow
def test_pool_lrn_cuda_kernels_compile_to_ptx_in_their_dtype():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    probe = subprocess.run([sys.executable, "-c", "from numba.cuda.cudadrv import nvvm; "
                            "assert nvvm.is_available()"], env=env, capture_output=True)
    if probe.returncode:
        pytest.skip("NVVM (the CUDA compiler library) is not installed")
    result = subprocess.run([sys.executable, "-c", _PTX], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
