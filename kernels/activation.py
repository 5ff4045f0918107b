"""Derivatives of the rectifiers, from the saved output: one pass instead of a mask saved by forward.

    relu(x)  = max(x, 0)          relu'  = 1 where y > 0, else 0      (0 at x = 0, as in PyTorch)
    relu6(x) = min(max(x, 0), 6)  relu6' = 1 where 0 < y < 6, else 0  (0 at both kinks)

with y the layer's output: x > 0 exactly where y > 0, and 0 < x < 6 exactly where 0 < y < 6 (NaN fails
both tests either way), so the output, which the next layer keeps anyway, replaces a saved mask.

    relu_backward(gy, y) -> gx       (gx = gy * [y > 0])
    relu6_backward(gy, y) -> gx      (gx = gy * [0 < y < 6])

``_numpy``: the product with the mask (what the layers computed before), ``_cpu``: a Numba ufunc making one
pass over gy and y (NumPy's ``gy * mask`` makes a temporary mask and casts it).  Outside the mask the result
is ``gy * 0``, as in the reference: 0, or NaN where gy is infinite or NaN.  No ``_cuda``: on the GPU, CuPy
evaluates the reference expression.
"""
import numpy as np
from numba import float32, float64, vectorize

_SIGNATURES = [float32(float32, float32), float64(float64, float64)]


def relu_backward_numpy(gy, y):
    return gy * (y > 0)


def relu6_backward_numpy(gy, y):
    return gy * ((y > 0) & (y < 6))


@vectorize(_SIGNATURES, cache=True)
def _relu_backward(gy, y):
    return gy if y > 0 else gy * 0


@vectorize(_SIGNATURES, cache=True)
def _relu6_backward(gy, y):
    return gy if (y > 0) & (y < 6) else gy * 0


def _floats(gy, y):
    return gy.dtype == y.dtype and gy.dtype in (np.float32, np.float64)


def relu_backward_cpu(gy, y):
    return _relu_backward(gy, y) if _floats(gy, y) else relu_backward_numpy(gy, y)


def relu6_backward_cpu(gy, y):
    return _relu6_backward(gy, y) if _floats(gy, y) else relu6_backward_numpy(gy, y)
