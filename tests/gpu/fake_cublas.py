"""fake_cupy's cuBLAS precision: CuPy's float32 compute type (``cupy._core._routines_linalg``) and the cuBLAS
handle's math mode (``cupy_backends.cuda.libs.cublas``), the switches tinyconv sets for TF32, and the rounding
that fake_cupy's products apply to their operands where those switches ask for it (``_uses_tf32``).
"""
import types

import numpy as np


def tf32_round(a):
    """Round a float32 array to TF32 (10 explicit mantissa bits, to nearest, ties to even), as tensor cores read
    their inputs; other dtypes are returned as they are."""
    if a.dtype != np.float32:
        return a
    u = np.ascontiguousarray(a).view(np.uint32)
    u = (u + np.uint32(0xFFF) + ((u >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
    return u.view(np.float32).reshape(a.shape)


_linalg = types.ModuleType("cupy._core._routines_linalg")
_linalg.COMPUTE_TYPE_DEFAULT, _linalg.COMPUTE_TYPE_TF32 = 1, 7
_linalg.compute_types = {"f": 1}   # float32 only: what tinyconv sets
_linalg.get_compute_type = lambda dtype: _linalg.compute_types.get(np.dtype(dtype).char, 1)
_linalg.set_compute_type = lambda dtype, compute_type: _linalg.compute_types.__setitem__(np.dtype(dtype).char,
                                                                                       compute_type)
_cublas = types.ModuleType("cupy_backends.cuda.libs.cublas")
_cublas.CUBLAS_DEFAULT_MATH, _cublas.CUBLAS_TF32_TENSOR_OP_MATH = 0, 3
_cublas.math_modes = {1: 0}        # handle -> math mode
_cublas.getMathMode = lambda handle: _cublas.math_modes.get(handle, 0)
_cublas.setMathMode = lambda handle, mode: _cublas.math_modes.__setitem__(handle, mode)
_device_module = types.ModuleType("cupy.cuda.device")
_device_module.get_cublas_handle = lambda: 1


def _uses_tf32(a, b):
    """CuPy's rule: 2-D products follow the float32 compute type, batched ones the handle's math mode."""
    if np.ndim(a) <= 2 and np.ndim(b) <= 2:
        return _linalg.get_compute_type(np.float32) == _linalg.COMPUTE_TYPE_TF32
    return _cublas.getMathMode(1) == _cublas.CUBLAS_TF32_TENSOR_OP_MATH
