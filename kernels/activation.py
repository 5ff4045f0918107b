"""Activation kernels: the rectifiers' derivatives, and the smooth activations (sigmoid, SiLU, GELU) one pass
each way.

The rectifiers, and their derivatives from the saved output: one pass instead of a mask saved by forward.

    relu(x)  = max(x, 0)          relu'  = 1 where y > 0, else 0      (0 at x = 0, as in PyTorch)
    relu6(x) = min(max(x, 0), 6)  relu6' = 1 where 0 < y < 6, else 0  (0 at both kinks)

with y the layer's output: x > 0 exactly where y > 0, and 0 < x < 6 exactly where 0 < y < 6 (NaN fails
both tests either way), so the output, which the next layer keeps anyway, replaces a saved mask.

    relu(x) -> y                     (NaN stays NaN; -0.0 becomes +0.0, as NumPy's maximum)
    relu6(x) -> y                    (NaN stays NaN; -0.0 stays -0.0, as NumPy's clip)
    relu_backward(gy, y) -> gx       (gx = gy * [y > 0])
    relu6_backward(gy, y) -> gx      (gx = gy * [0 < y < 6])

``_numpy``: NumPy's ``maximum`` and ``clip`` (the references take ``xp``), and the product with the mask.
``_cpu``: one Numba loop over x, or one ufunc pass over gy and y (NumPy's ``gy * mask`` makes a temporary mask
and casts it); the same bits as the reference.  Why a kernel for ``max(x, 0)``: NumPy's float32 ``maximum``
with a scalar, NaN-propagating, took 0.40 ms on a (1, 256, 56, 56) array where the loop takes 0.09 (a copy:
0.08); ReLU's forward was 5.7 of resnet50's 121 ms batch-1 inference.  ``clip`` is faster (0.10 ms) but
pays 2 us of Python a call.  Outside the mask the derivative is ``gy * 0``, as in the reference: 0, or NaN
where gy is infinite or NaN.  No ``_cuda``: on the GPU, CuPy evaluates the reference expressions.

The smooth activations (``e = exp(-|x|)``, ``Phi`` the standard normal CDF, ``phi`` its density):

    sigmoid(x) -> s                    s = 1/(1 + e) for x >= 0, e/(1 + e) for x < 0  (never overflows)
    sigmoid_backward(gy, s) -> gx      gx = gy s (1 - s)
    silu_forward(x) -> y               y = x s, s = sigmoid(x)
    silu_backward(gy, x) -> gx         gx = gy s (1 + x (1 - s)), s recomputed from x (as PyTorch, only x is
                                       saved: EfficientNet-B0 has 49 SiLUs; s would be one more array each)
    gelu_forward(x) -> (y, cdf)        y = x Phi(x),  Phi(x) = (1 + erf(x/sqrt 2))/2 = erfc(-x/sqrt 2)/2
    gelu_backward(gy, x, cdf) -> gx    gx = gy (Phi(x) + x phi(x)),  phi(x) = exp(-x^2/2)/sqrt(2 pi)

``_numpy``: NumPy expressions, several passes with temporaries (on a GPU, CuPy runs them: the GELU ones get
the device's ``erf`` kernel through ``kernel``).  ``_cpu``: one Numba loop each way.  In float32 the loop
evaluates in float64 with ``special.exp_neg`` and ``special.erf_erfc`` (no library call, so it vectorises) and
rounds once: measured on EfficientNet-B0's and ConvNeXt's activations, SiLU's forward took 69 ms of a 406 ms
training step and GELU's 94 of 1650, against PyTorch's 3 and 6.  Phi of a negative x comes from erfc,
not from 1 + erf (which cancels: in float32 it is 0 below x = -5.7).  float64 uses ``math.exp`` and
``math.erf``/``math.erfc``, correctly rounded to within an ulp or two.
"""
import math

import numpy as np
from numba import float32, float64, njit, vectorize

from .special import erf_erfc, erf_numpy, exp_neg

_SIGNATURES = [float32(float32, float32), float64(float64, float64)]


def relu_numpy(x, *, xp=np):
    return xp.maximum(x, x.dtype.type(0))


def relu6_numpy(x, *, xp=np):
    return xp.clip(x, 0, 6).astype(x.dtype, copy=False)


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


def _floats(*arrays):
    """Whether the arrays share a float dtype (the Numba kernels' signatures); else the reference runs."""
    dtype = arrays[0].dtype
    return dtype in (np.float32, np.float64) and all(a.dtype == dtype for a in arrays)


@njit(cache=True, inline="always")
def relu_value(v):
    """max(v, 0) of one value with NumPy's bits: NaN passes; -0.0 -> +0.0 as np.maximum (also batchnorm.py's)."""
    return v if v > 0 else (v if v != v else 0)


@njit(cache=True, inline="always")
def relu6_value(v):
    """min(max(v, 0), 6) of one value: NaN fails both tests and passes, -0.0 stays, as np.clip."""
    return 0 if v < 0 else (6 if v > 6 else v)


@njit(cache=True, error_model="numpy")
def _relu(x, y):  # x, y flat and contiguous
    for i in range(x.size):
        y[i] = relu_value(x[i])


@njit(cache=True, error_model="numpy")
def _relu6(x, y):
    for i in range(x.size):
        y[i] = relu6_value(x[i])


def _rectify(loop, reference, x):
    if x.dtype not in (np.float32, np.float64):
        return reference(x)
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    loop(x.reshape(-1), y.reshape(-1))
    return y


def relu_cpu(x):
    return _rectify(_relu, relu_numpy, x)


def relu6_cpu(x):
    return _rectify(_relu6, relu6_numpy, x)


def relu_backward_cpu(gy, y):
    return _relu_backward(gy, y) if _floats(gy, y) else relu_backward_numpy(gy, y)


def relu6_backward_cpu(gy, y):
    return _relu6_backward(gy, y) if _floats(gy, y) else relu6_backward_numpy(gy, y)


# -- smooth activations: NumPy reference ----------------------------------------------------------------
_SQRT1_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def sigmoid_numpy(x, *, xp=np):
    e = xp.exp(-abs(x))                                   # in (0, 1]: never overflows
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward_numpy(gy, s):
    return gy * s * (1 - s)                               # sigma' = sigma (1 - sigma)


def silu_forward_numpy(x, *, xp=np):
    return x * sigmoid_numpy(x, xp=xp)


def silu_backward_numpy(gy, x, *, xp=np):
    s = sigmoid_numpy(x, xp=xp)
    return gy * s * (1 + x * (1 - s))                     # d(x s) = s + x s (1 - s)


def _erf_reference(name):
    return {"erf": erf_numpy}[name]


def gelu_forward_numpy(x, *, xp=np, kernel=_erf_reference):
    cdf = (0.5 * (1 + kernel("erf")(x * x.dtype.type(_SQRT1_2)))).astype(x.dtype, copy=False)
    return x * cdf, cdf


def gelu_backward_numpy(gy, x, cdf, *, xp=np, kernel=_erf_reference):
    pdf = xp.exp(-0.5 * x * x) * x.dtype.type(_INV_SQRT_2PI)
    return gy * (cdf + x * pdf)                           # d(x Phi(x)) = Phi(x) + x phi(x)


# -- smooth activations: Numba --------------------------------------------------------------------------
@njit(inline="always")
def _sigmoid64(v, e):
    """sigma(v) from e = exp(-|v|): 1/(1 + e) for v >= 0, e/(1 + e) below (one division)."""
    d = 1.0 / (1.0 + e)
    return d if v >= 0 else e * d


# The loops compile with NumPy's error model: Python's (Numba's default) checks every division for a zero
# divisor, and that branch kept LLVM from vectorising them (sigmoid: 8.7 ns an element, against 1.1).
_LOOP = dict(fastmath={"contract"}, error_model="numpy", cache=True)
_LOOP64 = dict(error_model="numpy", cache=True)    # float64: math.exp/erf/erfc, no contraction


@njit(**_LOOP)
def _sigmoid32(x, s):
    for i in range(x.size):
        v = np.float64(x[i])
        s[i] = np.float32(_sigmoid64(v, exp_neg(abs(v))))


@njit(**_LOOP64)
def _sigmoid_f64(x, s):
    for i in range(x.size):
        s[i] = _sigmoid64(x[i], math.exp(-abs(x[i])))


@njit(**_LOOP)
def _silu32(x, y):
    for i in range(x.size):
        v = np.float64(x[i])
        y[i] = np.float32(v * _sigmoid64(v, exp_neg(abs(v))))


@njit(**_LOOP64)
def _silu_f64(x, y):
    for i in range(x.size):
        y[i] = x[i] * _sigmoid64(x[i], math.exp(-abs(x[i])))


@njit(**_LOOP)
def _silu_backward32(gy, x, gx):
    for i in range(x.size):
        v = np.float64(x[i])
        sv = _sigmoid64(v, exp_neg(abs(v)))
        gx[i] = np.float32(gy[i] * sv * (1.0 + v * (1.0 - sv)))


@njit(**_LOOP64)
def _silu_backward_f64(gy, x, gx):
    for i in range(x.size):
        sv = _sigmoid64(x[i], math.exp(-abs(x[i])))
        gx[i] = gy[i] * sv * (1.0 + x[i] * (1.0 - sv))


@njit(**_LOOP)
def _gelu32(x, y, cdf):
    for i in range(x.size):
        v = np.float64(x[i])
        erf, erfc = erf_erfc(abs(v) * _SQRT1_2)
        c = 0.5 * (1.0 + erf) if v >= 0 else 0.5 * erfc   # Phi(-a) = erfc(a/sqrt 2)/2: no cancellation
        cdf[i] = np.float32(c)
        y[i] = np.float32(v * c)


@njit(**_LOOP64)
def _gelu_f64(x, y, cdf):
    for i in range(x.size):
        v = x[i]
        c = 0.5 * (1.0 + math.erf(v * _SQRT1_2)) if v >= 0 else 0.5 * math.erfc(-v * _SQRT1_2)
        cdf[i] = c
        y[i] = v * c


@njit(**_LOOP)
def _gelu_backward32(gy, x, cdf, gx):
    for i in range(x.size):
        v = np.float64(x[i])
        gx[i] = np.float32(gy[i] * (cdf[i] + v * exp_neg(0.5 * v * v) * _INV_SQRT_2PI))


@njit(**_LOOP64)
def _gelu_backward_f64(gy, x, cdf, gx):
    for i in range(x.size):
        gx[i] = gy[i] * (cdf[i] + x[i] * math.exp(-0.5 * x[i] * x[i]) * _INV_SQRT_2PI)


@vectorize(_SIGNATURES, cache=True)
def _sigmoid_backward(gy, s):
    return gy * s * (1 - s)


def _run(loop32, loop64, outputs, *arrays):
    """The float32 or float64 loop over the arrays (flattened; copied only where not contiguous), writing
    ``outputs`` new arrays shaped like the first."""
    flat = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    outs = [np.empty_like(flat[0]) for _ in range(outputs)]
    (loop32 if flat[0].dtype == np.float32 else loop64)(*flat, *outs)
    return [o.reshape(arrays[0].shape) for o in outs]


def sigmoid_cpu(x):
    return _run(_sigmoid32, _sigmoid_f64, 1, x)[0] if _floats(x) else sigmoid_numpy(x)


def sigmoid_backward_cpu(gy, s):
    return _sigmoid_backward(gy, s) if _floats(gy, s) else sigmoid_backward_numpy(gy, s)


def silu_forward_cpu(x):
    return _run(_silu32, _silu_f64, 1, x)[0] if _floats(x) else silu_forward_numpy(x)


def silu_backward_cpu(gy, x):
    return _run(_silu_backward32, _silu_backward_f64, 1, gy, x)[0] if _floats(gy, x) else \
        silu_backward_numpy(gy, x)


def gelu_forward_cpu(x, *, xp=np, kernel=None):
    return tuple(_run(_gelu32, _gelu_f64, 2, x)) if _floats(x) else gelu_forward_numpy(x)


def gelu_backward_cpu(gy, x, cdf, *, xp=np, kernel=None):
    return _run(_gelu_backward32, _gelu_backward_f64, 1, gy, x, cdf)[0] if _floats(gy, x, cdf) else \
        gelu_backward_numpy(gy, x, cdf)
