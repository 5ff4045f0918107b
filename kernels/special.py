"""Special functions needed by activations: the error function ``erf`` (for the exact GELU).

    erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt

    erf(x) -> y        (same shape and dtype as x)

``_numpy`` is the reference (``math.erf`` element by element: slow but plain), ``_cpu`` Numba (``math.erf``
compiled, parallel over the flattened array), ``_cuda`` numba.cuda (one thread per element).  NumPy has no
vectorised ``erf``; these spare tinyconv a SciPy dependency.
"""
import math

import numpy as np
from numba import cuda, njit, prange

_THREADS = 256


# -- NumPy reference ----------------------------------------------------------------------------------
def erf_numpy(x):
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else np.empty_like(x)


# -- Numba, CPU ---------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _erf_jit(x, y):
    for i in prange(x.size):
        y[i] = math.erf(x[i])


def erf_cpu(x):
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    _erf_jit(flat, y)
    return y.reshape(x.shape)


# -- numba.cuda ---------------------------------------------------------------------------------------
@cuda.jit
def _erf_kernel(n, x, y):
    i = cuda.grid(1)
    if i < n:
        y[i] = math.erf(x[i])


def erf_cuda(x):
    n = int(np.prod(x.shape))
    flat = x.reshape(n) if hasattr(x, "reshape") else x
    y = cuda.device_array(n, dtype=x.dtype)
    if n > 0:
        _erf_kernel[(n + _THREADS - 1) // _THREADS, _THREADS](n, flat, y)
    return y.reshape(x.shape)
