"""Pooling on a GPU: the ``numba.cuda`` kernels and the ``*_pool2d_*_cuda`` entry points (the math, the NumPy
reference and the Numba CPU kernels: ``pooling.py``).
"""
import functools
import math

import numpy as np
from numba import cuda

_THREADS = 256


# ``_window`` and ``_avg_window`` again, with comparisons for the builtin two-argument min/max: those fail to
# compile for CUDA since numba 0.66 (numba#10753, "Signature mismatch: 2 argument types given").
@cuda.jit(device=True)
def _imin(a, b):
    return a if a < b else b


@cuda.jit(device=True)
def _imax(a, b):
    return a if a > b else b


@cuda.jit(device=True)
def _window_dev(o, S, P, K, D, size):
    start = o * S - P
    k_lo = (-start + D - 1) // D if start < 0 else 0
    k_hi = _imin(K, (size - 1 - start) // D + 1)
    return start, k_lo, k_hi


@cuda.jit(device=True)
def _avg_window_dev(oh, ow, H, W, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override):
    h0, w0 = oh * SH - PH, ow * SW - PW
    h1, w1 = _imin(h0 + KH, H + PH), _imin(w0 + KW, W + PW)
    pool_size = (h1 - h0) * (w1 - w0)
    h0, w0, h1, w1 = _imax(h0, 0), _imax(w0, 0), _imin(h1, H), _imin(w1, W)
    if divisor_override != 0:
        divisor = divisor_override
    elif count_include_pad:
        divisor = pool_size
    else:
        divisor = (h1 - h0) * (w1 - w0)
    return h0, h1, w0, w1, divisor


def _launch(kernel, n, *args):
    """Run ``kernel`` on ``n`` threads (one per element), 1-D grid."""
    if n > 0:
        kernel[(n + _THREADS - 1) // _THREADS, _THREADS](n, *args)


@cuda.jit
def _zero_kernel(n, a):
    i = cuda.grid(1)
    if i < n:
        a[i] = 0


def _device_zeros(shape, dtype):
    a = cuda.device_array(shape, dtype=dtype)
    _launch(_zero_kernel, a.size, a.reshape(a.size))
    return a


@cuda.jit
def _max_pool2d_forward_kernel(n_out, x, y, argmax, KH, KW, SH, SW, PH, PW, DH, DW):
    i = cuda.grid(1)
    if i >= n_out:
        return
    C, H, W, OH, OW = x.shape[1], x.shape[2], x.shape[3], y.shape[2], y.shape[3]
    ow, oh, c, n = i % OW, (i // OW) % OH, (i // (OW * OH)) % C, i // (OW * OH * C)
    h0, kh_lo, kh_hi = _window_dev(oh, SH, PH, KH, DH, H)
    w0, kw_lo, kw_hi = _window_dev(ow, SW, PW, KW, DW, W)
    best, best_i = x[n, c, 0, 0], -1
    for kh in range(kh_lo, kh_hi):
        h = h0 + kh * DH
        for kw in range(kw_lo, kw_hi):
            w = w0 + kw * DW
            v = x[n, c, h, w]
            if best_i < 0 or v > best or math.isnan(v):
                best, best_i = v, h * W + w
    y[n, c, oh, ow] = best
    argmax[n, c, oh, ow] = best_i


@cuda.jit
def _max_pool2d_backward_kernel(n_out, gy, argmax, gx):
    i = cuda.grid(1)
    if i >= n_out:
        return
    C, W, OH, OW = gy.shape[1], gx.shape[3], gy.shape[2], gy.shape[3]
    ow, oh, c, n = i % OW, (i // OW) % OH, (i // (OW * OH)) % C, i // (OW * OH * C)
    a = argmax[n, c, oh, ow]
    cuda.atomic.add(gx, (n, c, a // W, a % W), gy[n, c, oh, ow])   # overlapping windows may share an argmax


@functools.lru_cache(maxsize=None)
def _avg_pool2d_forward_kernel(dtype):
    """Built per dtype: the window sum and the (integer) divisor are in x's dtype (float32 stays float32)."""
    real = np.dtype(dtype).type

    @cuda.jit
    def kernel(n_out, x, y, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override):
        i = cuda.grid(1)
        if i >= n_out:
            return
        C, H, W, OH, OW = x.shape[1], x.shape[2], x.shape[3], y.shape[2], y.shape[3]
        ow, oh, c, n = i % OW, (i // OW) % OH, (i // (OW * OH)) % C, i // (OW * OH * C)
        h0, h1, w0, w1, divisor = _avg_window_dev(oh, ow, H, W, KH, KW, SH, SW, PH, PW,
                                                  count_include_pad, divisor_override)
        total = real(0)
        for h in range(h0, h1):
            for w in range(w0, w1):
                total += x[n, c, h, w]
        y[n, c, oh, ow] = total / real(divisor)
    return kernel


@functools.lru_cache(maxsize=None)
def _avg_pool2d_backward_kernel(dtype):
    """Built per dtype: the gathered gradient and the divisors are in gy's dtype."""
    real = np.dtype(dtype).type

    @cuda.jit
    def kernel(n_in, gy, gx, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override):
        i = cuda.grid(1)
        if i >= n_in:
            return
        C, H, W, OH, OW = gx.shape[1], gx.shape[2], gx.shape[3], gy.shape[2], gy.shape[3]
        w, h, c, n = i % W, (i // W) % H, (i // (W * H)) % C, i // (W * H * C)
        g = real(0)
        for kh in range(KH):
            t = h + PH - kh
            if t < 0 or t % SH != 0 or t // SH >= OH:
                continue
            for kw in range(KW):
                u = w + PW - kw
                if u < 0 or u % SW != 0 or u // SW >= OW:
                    continue
                divisor = _avg_window_dev(t // SH, u // SW, H, W, KH, KW, SH, SW, PH, PW,
                                          count_include_pad, divisor_override)[4]
                g += gy[n, c, t // SH, u // SW] / real(divisor)
        gx[n, c, h, w] = g
    return kernel


def max_pool2d_forward_cuda(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    N, C = x.shape[:2]
    y = cuda.device_array((N, C, OH, OW), dtype=x.dtype)
    argmax = cuda.device_array((N, C, OH, OW), dtype=np.int64)
    _launch(_max_pool2d_forward_kernel, N * C * OH * OW, x, y, argmax, KH, KW, SH, SW, PH, PW, DH, DW)
    return y, argmax


def max_pool2d_values_cuda(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    # one thread an output either way: the argmax costs the GPU one store, so the forward kernel serves
    return max_pool2d_forward_cuda(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)[0]


def max_pool2d_backward_cuda(gy, argmax, H, W):
    N, C, OH, OW = gy.shape
    gx = _device_zeros((N, C, H, W), gy.dtype)
    _launch(_max_pool2d_backward_kernel, N * C * OH * OW, gy, argmax, gx)
    return gx


def avg_pool2d_forward_cuda(x, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override):
    N, C = x.shape[:2]
    y = cuda.device_array((N, C, OH, OW), dtype=x.dtype)
    _launch(_avg_pool2d_forward_kernel(np.dtype(x.dtype).str), N * C * OH * OW, x, y, KH, KW, SH, SW, PH, PW,
            bool(count_include_pad), int(divisor_override or 0))
    return y


def avg_pool2d_backward_cuda(gy, H, W, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override):
    N, C = gy.shape[:2]
    gx = cuda.device_array((N, C, H, W), dtype=gy.dtype)
    _launch(_avg_pool2d_backward_kernel(np.dtype(gy.dtype).str), N * C * H * W, gy, gx, KH, KW, SH, SW, PH, PW,
            bool(count_include_pad), int(divisor_override or 0))
    return gx

