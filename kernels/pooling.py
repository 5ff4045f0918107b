"""Pooling kernels on NCHW arrays: max pooling (saving the argmax for backward) and average pooling.

Shapes: x (N, C, H, W), y (N, C, OH, OW); window KH x KW, stride SH, SW, padding PH, PW, dilation DH, DW.
Output cell (oh, ow) reads input rows ``oh*SH - PH + kh*DH`` (kh < KH) and columns ``ow*SW - PW + kw*DW``
(kw < KW); positions outside the input are padding.  The caller computes OH, OW (with ``ceil_mode`` the last
window may run past the bottom/right edge: it is clipped there).

    max_pool2d_forward(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW) -> (y, argmax)
        y = max over the window's non-padding positions; argmax (int64, like y) is the flat index ``h*W + w``
        of the maximum within its (H, W) plane, PyTorch's ``indices``.  The first maximum in row-major window
        order wins; a NaN wins and propagates (PyTorch's rule).
    max_pool2d_backward(gy, argmax, H, W) -> gx
        gx[n, c].flat[argmax[n, c, oh, ow]] += gy[n, c, oh, ow]
    avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override) -> y
        y = (sum of the window's input values) / divisor, PyTorch's divisor: ``divisor_override`` if non-zero,
        else the window size clipped to the padded input (``count_include_pad``), else the number of real
        input positions in the window.
    avg_pool2d_backward(gy, H, W, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override) -> gx
        every input position of a window receives gy / divisor.

Each kernel comes as ``_numpy`` (readable NumPy reference), ``_cpu`` (Numba, parallel over the N*C planes)
and ``_cuda`` (numba.cuda, one thread per output element; max backward scatters with atomic adds, avg backward runs
one thread per input element that gathers from the windows covering it).  Float32 and float64; the CUDA
kernels compute in the array's dtype.
"""
import functools
import math

import numpy as np
from numba import cuda, njit, prange

_THREADS = 256


def _window(o, S, P, K, D, size):
    """Start (unclipped), and first/last+1 valid tap of window ``o`` along one axis (dilation ``D``)."""
    start = o * S - P
    k_lo = (-start + D - 1) // D if start < 0 else 0          # first tap inside the input
    k_hi = min(K, (size - 1 - start) // D + 1)                # one past the last tap inside the input
    return start, k_lo, k_hi


def _avg_window(oh, ow, H, W, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override):
    """PyTorch's average-pool window: clipped bounds ``h0, h1, w0, w1`` and the divisor."""
    h0, w0 = oh * SH - PH, ow * SW - PW
    h1, w1 = min(h0 + KH, H + PH), min(w0 + KW, W + PW)
    pool_size = (h1 - h0) * (w1 - w0)                         # clipped to the padded input only
    h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
    if divisor_override != 0:
        divisor = divisor_override
    elif count_include_pad:
        divisor = pool_size
    else:
        divisor = (h1 - h0) * (w1 - w0)
    return h0, h1, w0, w1, divisor


# -- NumPy reference ----------------------------------------------------------------------------------
def _padded_extent(size, O, S, P, K, D):
    """Rows (or columns) of a padded array that holds every tap of every window."""
    return max(size + 2 * P, (O - 1) * S + (K - 1) * D + 1)


def _first_valid(O, S, P, D):
    """Per output position, the first tap position inside the input (PyTorch's initial argmax)."""
    start = np.arange(O) * S - P
    return start + D * ((np.maximum(-start, 0) + D - 1) // D)


def max_pool2d_forward_numpy(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    N, C, H, W = x.shape
    Hp, Wp = _padded_extent(H, OH, SH, PH, KH, DH), _padded_extent(W, OW, SW, PW, KW, DW)
    xp = np.full((N, C, Hp, Wp), -np.inf, dtype=x.dtype)     # padding never wins
    xp[:, :, PH:PH + H, PW:PW + W] = x
    y = np.full((N, C, OH, OW), -np.inf, dtype=x.dtype)
    argmax = np.broadcast_to(_first_valid(OH, SH, PH, DH)[:, None] * W + _first_valid(OW, SW, PW, DW), y.shape)
    argmax = argmax.astype(np.int64)
    for kh in range(KH):
        for kw in range(KW):
            tap = xp[:, :, kh * DH: kh * DH + (OH - 1) * SH + 1: SH, kw * DW: kw * DW + (OW - 1) * SW + 1: SW]
            h = np.arange(OH) * SH - PH + kh * DH
            w = np.arange(OW) * SW - PW + kw * DW
            better = (tap > y) | np.isnan(tap)
            y = np.where(better, tap, y)
            argmax = np.where(better, h[:, None] * W + w, argmax)
    return y, argmax


def max_pool2d_backward_numpy(gy, argmax, H, W):
    N, C = gy.shape[:2]
    gx = np.zeros((N * C, H * W), dtype=gy.dtype)
    planes = np.arange(N * C)[:, None]
    np.add.at(gx, (planes, argmax.reshape(N * C, -1)), gy.reshape(N * C, -1))
    return gx.reshape(N, C, H, W)


def _avg_divisors(H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override, dtype):
    div = np.empty((OH, OW), dtype=dtype)
    for oh in range(OH):
        for ow in range(OW):
            div[oh, ow] = _avg_window(oh, ow, H, W, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override)[4]
    return div


def avg_pool2d_forward_numpy(x, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override):
    N, C, H, W = x.shape
    Hp, Wp = _padded_extent(H, OH, SH, PH, KH, 1), _padded_extent(W, OW, SW, PW, KW, 1)
    xp = np.zeros((N, C, Hp, Wp), dtype=x.dtype)
    xp[:, :, PH:PH + H, PW:PW + W] = x
    total = np.zeros((N, C, OH, OW), dtype=x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            total += xp[:, :, kh: kh + (OH - 1) * SH + 1: SH, kw: kw + (OW - 1) * SW + 1: SW]
    return total / _avg_divisors(H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override,
                                 x.dtype)


def avg_pool2d_backward_numpy(gy, H, W, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override):
    N, C, OH, OW = gy.shape
    g = gy / _avg_divisors(H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override, gy.dtype)
    Hp, Wp = _padded_extent(H, OH, SH, PH, KH, 1), _padded_extent(W, OW, SW, PW, KW, 1)
    gxp = np.zeros((N, C, Hp, Wp), dtype=gy.dtype)
    for kh in range(KH):
        for kw in range(KW):
            gxp[:, :, kh: kh + (OH - 1) * SH + 1: SH, kw: kw + (OW - 1) * SW + 1: SW] += g
    return np.ascontiguousarray(gxp[:, :, PH:PH + H, PW:PW + W])


# -- Numba, CPU ---------------------------------------------------------------------------------------
_window_jit = njit(cache=True)(_window)
_avg_window_jit = njit(cache=True)(_avg_window)


@njit(parallel=True, cache=True)
def _max_pool2d_forward_jit(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    N, C, H, W = x.shape
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N, C, OH, OW), dtype=np.int64)
    for p in prange(N * C):
        n, c = p // C, p % C
        for oh in range(OH):
            h0, kh_lo, kh_hi = _window_jit(oh, SH, PH, KH, DH, H)
            for ow in range(OW):
                w0, kw_lo, kw_hi = _window_jit(ow, SW, PW, KW, DW, W)
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
    return y, argmax


@njit(parallel=True, cache=True)
def _max_pool2d_backward_jit(gy, argmax, H, W):
    N, C, OH, OW = gy.shape
    gx = np.zeros((N, C, H * W), dtype=gy.dtype)
    for p in prange(N * C):                  # one plane per iteration: no two iterations write one element
        n, c = p // C, p % C
        for oh in range(OH):
            for ow in range(OW):
                gx[n, c, argmax[n, c, oh, ow]] += gy[n, c, oh, ow]
    return gx.reshape(N, C, H, W)


@njit(parallel=True, cache=True)
def _avg_pool2d_forward_jit(x, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override):
    N, C, H, W = x.shape
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    for p in prange(N * C):
        n, c = p // C, p % C
        for oh in range(OH):
            for ow in range(OW):
                h0, h1, w0, w1, divisor = _avg_window_jit(oh, ow, H, W, KH, KW, SH, SW, PH, PW,
                                                          count_include_pad, divisor_override)
                total = 0.0                   # accumulated in float64, stored in x's dtype
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        total += x[n, c, h, w]
                y[n, c, oh, ow] = total / divisor
    return y


@njit(parallel=True, cache=True)
def _avg_pool2d_backward_jit(gy, H, W, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override):
    N, C, OH, OW = gy.shape
    gx = np.zeros((N, C, H, W), dtype=gy.dtype)
    for p in prange(N * C):
        n, c = p // C, p % C
        for oh in range(OH):
            for ow in range(OW):
                h0, h1, w0, w1, divisor = _avg_window_jit(oh, ow, H, W, KH, KW, SH, SW, PH, PW,
                                                          count_include_pad, divisor_override)
                g = gy[n, c, oh, ow] / divisor
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        gx[n, c, h, w] += g
    return gx


def max_pool2d_forward_cpu(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    return _max_pool2d_forward_jit(np.ascontiguousarray(x), KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)


def max_pool2d_backward_cpu(gy, argmax, H, W):
    return _max_pool2d_backward_jit(np.ascontiguousarray(gy), np.ascontiguousarray(argmax), H, W)


def avg_pool2d_forward_cpu(x, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override):
    return _avg_pool2d_forward_jit(np.ascontiguousarray(x), KH, KW, SH, SW, PH, PW, OH, OW,
                                   bool(count_include_pad), int(divisor_override or 0))


def avg_pool2d_backward_cpu(gy, H, W, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override):
    return _avg_pool2d_backward_jit(np.ascontiguousarray(gy), H, W, KH, KW, SH, SW, PH, PW,
                                    bool(count_include_pad), int(divisor_override or 0))


# -- numba.cuda ---------------------------------------------------------------------------------------
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
