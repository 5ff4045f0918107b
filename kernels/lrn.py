"""Local response normalisation across channels (PyTorch's convention), forward and backward.

Arrays are (N, C, M): the caller flattens every axis after the channels into M (M = H*W for images).
With the window W(c) = [c - size//2, c + (size-1)//2] clipped to [0, C) (PyTorch pads ``size//2`` channels
before and ``(size-1)//2`` after):

    scale_c = k + alpha/size * sum_{c' in W(c)} x_{c'}^2          y_c = x_c * scale_c^(-beta)

    lrn_forward(x, size, alpha, beta, k) -> (y, scale)
    lrn_backward(x, scale, gy, size, alpha, beta) -> gx

The gradient (``n`` = size): y_c depends on x_j directly (j == c) and through scale_c for every c whose window
holds j, i.e. c in [j - (size-1)//2, j + size//2] (the mirrored window), with d scale_c / d x_j = 2 alpha/n x_j:

    gx_j = gy_j scale_j^(-beta) - (2 alpha beta / n) x_j sum_{c: j in W(c)} gy_c x_c scale_c^(-beta-1)

``_numpy`` is the reference (shifted slices of a channel-padded array), ``_cpu`` Numba (parallel over the
N*C rows), ``_cuda`` numba.cuda (one thread per element).  Float32 and float64; the scalars are cast to
the array's dtype.
"""
import numpy as np
from numba import cuda, njit, prange

_THREADS = 256


# -- NumPy reference ----------------------------------------------------------------------------------
def _window_sum(a, before, after, size):
    """sum_{i = c-before}^{c+after} a[:, i] for every channel c (zeros beyond the edges)."""
    C = a.shape[1]
    padded = np.pad(a, ((0, 0), (before, after), (0, 0)))
    return sum(padded[:, i:i + C] for i in range(size))


def lrn_forward_numpy(x, size, alpha, beta, k):
    scale = k + (alpha / size) * _window_sum(x * x, size // 2, (size - 1) // 2, size)
    scale = scale.astype(x.dtype, copy=False)
    return x * scale ** -x.dtype.type(beta), scale


def lrn_backward_numpy(x, scale, gy, size, alpha, beta):
    beta = x.dtype.type(beta)
    t = gy * x * scale ** (-beta - 1)
    # the windows holding channel j are the mirrored window: (size-1)//2 before, size//2 after
    gx = gy * scale ** -beta - x.dtype.type(2 * alpha * beta / size) * x * _window_sum(t, (size - 1) // 2,
                                                                                         size // 2, size)
    return gx.astype(x.dtype, copy=False)


# -- Numba, CPU ---------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _lrn_forward_jit(x, size, alpha, beta, k):
    N, C, M = x.shape
    y, scale = np.empty_like(x), np.empty_like(x)
    a = alpha / size
    for p in prange(N * C):
        n, c = p // C, p % C
        acc = np.zeros(M, dtype=x.dtype)
        for j in range(max(c - size // 2, 0), min(c + (size - 1) // 2, C - 1) + 1):
            for m in range(M):
                acc[m] += x[n, j, m] * x[n, j, m]
        for m in range(M):
            s = k + a * acc[m]
            scale[n, c, m] = s
            y[n, c, m] = x[n, c, m] * s ** -beta
    return y, scale


@njit(parallel=True, cache=True)
def _lrn_backward_jit(x, scale, gy, size, alpha, beta):
    N, C, M = x.shape
    t = np.empty_like(x)
    for p in prange(N * C):
        n, c = p // C, p % C
        for m in range(M):
            t[n, c, m] = gy[n, c, m] * x[n, c, m] * scale[n, c, m] ** (-beta - 1)
    gx = np.empty_like(x)
    coef = 2 * alpha * beta / size
    for p in prange(N * C):
        n, j = p // C, p % C
        acc = np.zeros(M, dtype=x.dtype)
        for c in range(max(j - (size - 1) // 2, 0), min(j + size // 2, C - 1) + 1):
            for m in range(M):
                acc[m] += t[n, c, m]
        for m in range(M):
            gx[n, j, m] = gy[n, j, m] * scale[n, j, m] ** -beta - coef * x[n, j, m] * acc[m]
    return gx


def lrn_forward_cpu(x, size, alpha, beta, k):
    f = x.dtype.type
    return _lrn_forward_jit(np.ascontiguousarray(x), int(size), f(alpha), f(beta), f(k))


def lrn_backward_cpu(x, scale, gy, size, alpha, beta):
    f = x.dtype.type
    return _lrn_backward_jit(np.ascontiguousarray(x), np.ascontiguousarray(scale), np.ascontiguousarray(gy),
                             int(size), f(alpha), f(beta))


# -- numba.cuda ---------------------------------------------------------------------------------------
@cuda.jit
def _lrn_forward_kernel(n_el, x, y, scale, size, a, neg_beta, k, zero):
    # scalars arrive in x's dtype (a = alpha/size, neg_beta = -beta): no float64 arithmetic on float32 input
    i = cuda.grid(1)
    if i >= n_el:
        return
    C, M = x.shape[1], x.shape[2]
    m, c, n = i % M, (i // M) % C, i // (M * C)
    acc = zero
    lo, hi = c - size // 2, c + (size - 1) // 2 + 1       # no builtin min/max: they fail on CUDA (numba#10753)
    for j in range(lo if lo > 0 else 0, hi if hi < C else C):
        acc += x[n, j, m] * x[n, j, m]
    s = k + a * acc
    scale[n, c, m] = s
    y[n, c, m] = x[n, c, m] * s ** neg_beta


@cuda.jit
def _lrn_backward_kernel(n_el, x, scale, gy, gx, size, neg_beta, neg_beta_1, coef, zero):
    # scalars in x's dtype: neg_beta = -beta, neg_beta_1 = -beta - 1, coef = 2 alpha beta / size
    i = cuda.grid(1)
    if i >= n_el:
        return
    C, M = x.shape[1], x.shape[2]
    m, j, n = i % M, (i // M) % C, i // (M * C)
    acc = zero
    lo, hi = j - (size - 1) // 2, j + size // 2 + 1
    for c in range(lo if lo > 0 else 0, hi if hi < C else C):
        acc += gy[n, c, m] * x[n, c, m] * scale[n, c, m] ** neg_beta_1
    gx[n, j, m] = gy[n, j, m] * scale[n, j, m] ** neg_beta - coef * x[n, j, m] * acc


def _launch(kernel, n, *args):
    if n > 0:
        kernel[(n + _THREADS - 1) // _THREADS, _THREADS](n, *args)


def lrn_forward_cuda(x, size, alpha, beta, k):
    f = x.dtype.type
    y = cuda.device_array(x.shape, dtype=x.dtype)
    scale = cuda.device_array(x.shape, dtype=x.dtype)
    _launch(_lrn_forward_kernel, int(np.prod(x.shape)), x, y, scale, int(size), f(alpha / size), f(-beta), f(k),
            f(0))
    return y, scale


def lrn_backward_cuda(x, scale, gy, size, alpha, beta):
    f = x.dtype.type
    gx = cuda.device_array(x.shape, dtype=x.dtype)
    _launch(_lrn_backward_kernel, int(np.prod(x.shape)), x, scale, gy, gx, int(size), f(-beta), f(-beta - 1),
            f(2 * alpha * beta / size), f(0))
    return gx
