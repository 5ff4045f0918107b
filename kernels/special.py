"""Special functions needed by activations: the error function ``erf`` (for the exact GELU), and ``tanh`` with
its derivative (LeNet-5's activation).

    erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt
    tanh(x) = (e^x - e^-x) / (e^x + e^-x),        tanh'(x) = 1 - tanh(x)^2

    erf(x) -> y                  (same shape and dtype as x)
    tanh(x) -> y                 (same shape and dtype as x)
    tanh_backward(gy, y) -> gx   (gx = gy * (1 - y*y), with y = tanh(x) saved by forward)

``_numpy`` is the reference (``math.erf`` element by element: slow but plain; ``np.tanh``), ``_cpu`` Numba,
``_cuda`` numba.cuda (erf only: on the GPU, CuPy computes ``tanh`` and evaluates the derivative's reference
expression).  NumPy has no vectorised ``erf``; these spare tinyconv a SciPy dependency.

Why a float32 ``tanh`` of our own: NumPy's float32 ``tanh`` runs element by element (2.7 ns an element here,
LeNet-5's 4 activations took 15% of its training step).  ``tanh_cpu`` evaluates, in float64 and in a form the
compiler turns into SIMD code (no branch, no library call),

    a = min(|x|, 9.5);  r = -2a / 32;  m = expm1(r) by its Taylor series to r^11 (|r| <= 0.6: error < 1e-11);
    m <- m (m + 2), five times        (expm1(2r) = expm1(r) (expm1(r) + 2): now m = expm1(-2a), no cancellation)
    tanh(a) = -m / (2 + m);           tanh(x) = copysign(tanh(a), x)

and rounds once to float32.  Every finite float32 input was checked against float64 ``tanh``: the result is
the correctly rounded one (at most 0.5 ulp; NumPy's is up to 1.4 ulp off); NaN, +-inf and -0.0 behave as in
NumPy.  Above 9.5, tanh rounds to +-1 in float32 (1 - tanh(9.02) < half an ulp of 1).  float64 keeps
``np.tanh``: the trick's float64 evaluation would not be exact to float64's last bit.
"""
import math

import numpy as np
from numba import cuda, float32, float64, njit, prange, vectorize

_THREADS = 256


# -- NumPy reference ----------------------------------------------------------------------------------
def erf_numpy(x):
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else np.empty_like(x)


def tanh_numpy(x, *, xp=np):
    return xp.tanh(x)


def tanh_backward_numpy(gy, y):
    # tanh' = 1 - tanh^2
    return gy * (1 - y * y)


# -- Numba, CPU ---------------------------------------------------------------------------------------
# expm1(r) = r (1 + r/2! + r^2/3! + ... + r^10/11!): the Taylor coefficients 1/k!, k = 1..11
_E1, _E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11 = (1.0 / math.factorial(k) for k in range(1, 12))


# ``contract`` lets the multiply-adds fuse (FMA); no other fast-math flag, so NaN and infinities keep their
# meaning.  A ufunc's loop is what LLVM vectorises here (a hand-written loop over arrays was left scalar).
@vectorize([float32(float32)], fastmath={"contract"}, cache=True)
def _tanh32(x):
    a = abs(np.float64(x))
    a = 9.5 if a > 9.5 else a          # written so that NaN passes through (NaN > 9.5 is False)
    r = a * (-2.0 / 32.0)
    r2 = r * r
    r4 = r2 * r2
    # Estrin's scheme (shorter dependency chains than Horner's) for 1 + r/2! + ... + r^10/11!
    p = (((_E1 + _E2 * r) + r2 * (_E3 + _E4 * r)) + r4 * ((_E5 + _E6 * r) + r2 * (_E7 + _E8 * r))
         + r4 * r4 * ((_E9 + _E10 * r) + r2 * _E11))
    m = r * p                          # expm1(-2a / 32)
    m = m * (m + 2.0)                  # expm1(-2a / 16)
    m = m * (m + 2.0)                  # expm1(-2a / 8)
    m = m * (m + 2.0)                  # expm1(-2a / 4)
    m = m * (m + 2.0)                  # expm1(-2a / 2)
    m = m * (m + 2.0)                  # expm1(-2a)
    # tanh(a) = (1 - e^-2a) / (1 + e^-2a) = -m / (2 + m)
    return np.float32(math.copysign(m / (-2.0 - m), np.float64(x)))


@vectorize([float32(float32, float32), float64(float64, float64)], fastmath={"contract"}, cache=True)
def _tanh_backward(gy, y):
    # tanh' = 1 - tanh^2, in one pass (NumPy's expression makes three)
    return gy * (1 - y * y)


def tanh_cpu(x):
    """float32: the vectorised, correctly rounded ``tanh`` of the module docstring; float64: ``np.tanh``."""
    if x.dtype != np.float32:
        return np.tanh(x)
    with np.errstate(invalid="ignore"):  # a NaN input sets the FPU's invalid flag on its way; np.tanh is silent
        return _tanh32(x)


def tanh_backward_cpu(gy, y):
    return _tanh_backward(gy, y) if gy.dtype == y.dtype and gy.dtype in (np.float32, np.float64) \
        else tanh_backward_numpy(gy, y)


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
