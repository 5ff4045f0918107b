"""Special functions needed by activations: the error function ``erf`` (for the exact GELU), and ``tanh`` with
its derivative (LeNet-5's activation); and the inline pieces the activation loops share (``exp_neg``,
``erf_erfc``: float64 evaluations without a library call, which LLVM vectorises).

    erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt
    tanh(x) = (e^x - e^-x) / (e^x + e^-x),        tanh'(x) = 1 - tanh(x)^2

    erf(x) -> y                  (same shape and dtype as x)
    tanh(x) -> y                 (same shape and dtype as x)
    tanh_backward(gy, y) -> gx   (gx = gy * (1 - y*y), with y = tanh(x) saved by forward)

``_numpy`` is the reference (``math.erf`` element by element: slow but plain; ``np.tanh``), ``_cpu`` Numba,
``_cuda`` numba.cuda (erf only: on the GPU, CuPy computes ``tanh`` and evaluates the derivative's reference
expression).  NumPy has no vectorised ``erf``; these spare tinyconv a SciPy dependency.  ``erf_cpu`` on
float32 evaluates ``erf_erfc`` (below) and rounds once: correctly rounded on every float32 tested, about 3 ns
an element against ``math.erf``'s 10-20.

Why a float32 ``tanh`` of our own: on the AVX2 machine of an earlier round NumPy's float32 ``tanh`` ran
element by element (2.7 ns an element; LeNet-5's 4 activations took 15% of its training step).  With
AVX-512 NumPy's is vectorised and faster (0.4 against 1.2 ns), but up to 1.4 ulp off.  ``tanh_cpu``
evaluates, in float64 and in a form the compiler turns into SIMD code (no branch, no library call),

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


# exp(-a) for 0 <= a <= 110 (beyond, clamped: float32's exp underflows to 0 from 104), in float64 without a
# library call, so that loops using it vectorise: r = -a/256 (|r| <= 0.43), exp(r) by its Taylor series to
# r^11 (error < 1e-13), squared eight times (exp(r)^256 = exp(-a); the relative error grows 256-fold, to
# < 3e-11: far below float32's half ulp, 3e-8).
@njit(inline="always")
def exp_neg(a):
    a = 110.0 if a > 110.0 else a
    r = a * (-1.0 / 256.0)
    r2 = r * r
    r4 = r2 * r2
    e = (((1.0 + r) + r2 * (_E2 + _E3 * r)) + r4 * ((_E4 + _E5 * r) + r2 * (_E6 + _E7 * r))
         + r4 * r4 * ((_E8 + _E9 * r) + r2 * (_E10 + _E11 * r)))
    e = e * e
    e = e * e
    e = e * e
    e = e * e
    e = e * e
    e = e * e
    e = e * e
    return e * e


# erf and erfc of a >= 0 in float64, for float32 results (error < 1e-12 absolute on erf, relative on erfc),
# again without a library call or a table lookup (either keeps LLVM from vectorising the loop):
#   a <= 1:       erf(a) = a P(2a^2 - 1),  P of degree 10 (erf(a)/a is even and smooth: relative error 6e-15)
#   1 < a <= 10:  erfc(a) = exp(-a^2) Q((1/a - 0.55) / 0.45),  Q of degree 22 (erfcx(a) = e^(a^2) erfc(a)
#                 is smooth in 1/a on [0.1, 1]: relative error 1.5e-13)
#   a > 10:       erfc(a) = 0 (< 2.1e-45, below float32's smallest subnormal)
# The coefficients are Chebyshev least-squares fits to math.erf / math.erfc on 40,000 points, converted to
# monomials (well conditioned here: the sums of their magnitudes are 1.13 and 0.50), lowest degree first.
_ERF_SMALL = (0.9654687386698724, -0.1405360890227128, 0.01985249668890105, -0.0022854855611243717,
              0.00021751715647218978, -1.7537169729063688e-05, 1.22338185501823e-06, -7.511485879129444e-08,
              4.116563183090913e-09, -2.0447237643834844e-10, 8.951456545060347e-12)
_ERFCX = (0.2762943828403362, 0.18397535266614254, -0.036700137363511326, 0.0030737713223494634,
          0.0018451758097363987, -0.0012829145039525939, 0.00046862438482388506, -8.526755393564134e-05,
          -2.588714708608715e-05, 3.4104285577891905e-05, -1.9519304460396307e-05, 7.468421529673489e-06,
          -1.4550426568294161e-06, -6.66647008554637e-07, 9.04601375306089e-07, -4.3859968308484495e-07,
          1.5817725500568401e-07, -2.017597365311979e-07, 1.0586103598729405e-07, 8.721695969030091e-08,
          -7.881503776237106e-08, -3.142243558956299e-09, 1.04480029531423e-08)
(_S0, _S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8, _S9, _S10) = _ERF_SMALL
(_Q0, _Q1, _Q2, _Q3, _Q4, _Q5, _Q6, _Q7, _Q8, _Q9, _Q10, _Q11, _Q12, _Q13, _Q14, _Q15, _Q16, _Q17, _Q18, _Q19,
 _Q20, _Q21, _Q22) = _ERFCX


@njit(inline="always")
def erf_erfc(a):
    """(erf(a), erfc(a)) for a >= 0 (or NaN): both branches are evaluated, then one is selected (no branch).
    Horner's rule written out: a loop over a coefficient tuple of this length is not unrolled, and a loop
    inside the element loop keeps it scalar."""
    b = 10.0 if a > 10.0 else a                          # NaN passes through (NaN > 10 is False)
    s = 2.0 * b * b - 1.0
    p = ((((_S10 * s + _S9) * s + _S8) * s + _S7) * s + _S6) * s + _S5
    p = ((((p * s + _S4) * s + _S3) * s + _S2) * s + _S1) * s + _S0
    erf_small = b * p
    t = (1.0 / (b if b > 1.0 else 1.0) - 0.55) * (1.0 / 0.45)
    q = (((((_Q22 * t + _Q21) * t + _Q20) * t + _Q19) * t + _Q18) * t + _Q17) * t + _Q16
    q = ((((((q * t + _Q15) * t + _Q14) * t + _Q13) * t + _Q12) * t + _Q11) * t + _Q10) * t + _Q9
    q = (((((((q * t + _Q8) * t + _Q7) * t + _Q6) * t + _Q5) * t + _Q4) * t + _Q3) * t + _Q2) * t + _Q1
    erfc_large = exp_neg(b * b) * (q * t + _Q0)
    if a > 10.0:
        erfc_large = 0.0
    if b <= 1.0:
        return erf_small, 1.0 - erf_small
    return 1.0 - erfc_large, erfc_large


@njit(fastmath={"contract"}, error_model="numpy", cache=True)
def _erf32_loop(x, y):
    for i in range(x.size):
        v = np.float64(x[i])
        e, _ = erf_erfc(abs(v))
        y[i] = np.float32(math.copysign(e, v))


@njit(parallel=True, cache=True)
def _erf_jit(x, y):
    for i in prange(x.size):
        y[i] = math.erf(x[i])


def erf_cpu(x):
    """float32: ``erf_erfc`` above, vectorised, rounded once (correctly rounded on every float32 tested:
    tests/kernels/test_special_kernels.py); float64: ``math.erf``."""
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    if flat.dtype == np.float32:
        with np.errstate(invalid="ignore"):
            _erf32_loop(flat, y)
    else:
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
