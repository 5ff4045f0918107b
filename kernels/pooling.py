"""Pooling kernels on NCHW arrays: max pooling (saving the argmax for backward) and average pooling.

Shapes: x (N, C, H, W), y (N, C, OH, OW); window KH x KW, stride SH, SW, padding PH, PW, dilation DH, DW.
Output cell (oh, ow) reads input rows ``oh*SH - PH + kh*DH`` (kh < KH) and columns ``ow*SW - PW + kw*DW``
(kw < KW); positions outside the input are padding.  The caller computes OH, OW (with ``ceil_mode`` the last
window may run past the bottom/right edge: it is clipped there).

    max_pool2d_forward(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW) -> (y, argmax)
        y = max over the window's non-padding positions; argmax (int64, like y) is the flat index ``h*W + w``
        of the maximum within its (H, W) plane, PyTorch's ``indices``.  The first maximum in row-major window
        order wins; a NaN wins and propagates (PyTorch's rule).
    max_pool2d_values(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW) -> y
        y of ``max_pool2d_forward`` alone, for a forward that no gradient will pass (inference): no argmax.
    max_pool2d_backward(gy, argmax, H, W) -> gx
        gx[n, c].flat[argmax[n, c, oh, ow]] += gy[n, c, oh, ow]
    avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override) -> y
        y = (sum of the window's input values) / divisor, PyTorch's divisor: ``divisor_override`` if non-zero,
        else the window size clipped to the padded input (``count_include_pad``), else the number of real
        input positions in the window.
    avg_pool2d_backward(gy, H, W, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override) -> gx
        every input position of a window receives gy / divisor.

Each kernel comes as ``_numpy`` (readable NumPy reference), ``_cpu`` (Numba, parallel over the N*C planes;
max pooling's common windows compiled with their geometry as constants, ``COMPILED_WINDOWS``) and ``_cuda``
(numba.cuda in ``pooling_cuda.py``, one thread per output element; max backward scatters with atomic adds, avg
backward runs one thread per input element that gathers from the windows covering it).  Float32 and float64;
the CUDA kernels compute in the array's dtype.
"""
import math

import numpy as np
from numba import njit, prange


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


def max_pool2d_values_numpy(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    return max_pool2d_forward_numpy(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)[0]


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


# The window bounds (and average pooling's divisors) depend on one axis each, so they are computed once per
# call, not per plane.  Outputs are allocated by NumPy (see kernels/im2col.py).  Flat indices are cast to
# unsigned where they are used: Numba wraps a negative signed index around, and that per-element check
# costs (every index here is >= 0).
@njit(cache=True)
def _windows_jit(O, S, P, K, D, size):
    """Along one axis, per output position o: the window's start and its first/last+1 tap inside the input."""
    start, lo, hi = np.empty(O, np.int64), np.empty(O, np.int64), np.empty(O, np.int64)
    for o in range(O):
        start[o], lo[o], hi[o] = _window_jit(o, S, P, K, D, size)
    return start, lo, hi


@njit(cache=True, inline="always")
def _max_window_jit(xf, plane, W, h0, kh_lo, kh_hi, DH, w0, kw_lo, kw_hi, DW):
    """The maximum of one window and its flat index in the plane (the first maximum; the last NaN)."""
    best, best_i = xf[np.uint64(plane)], -1
    for kh in range(kh_lo, kh_hi):
        h = h0 + kh * DH
        for kw in range(kw_lo, kw_hi):
            i = h * W + w0 + kw * DW
            v = xf[np.uint64(plane + i)]
            if best_i < 0 or v > best or math.isnan(v):
                best, best_i = v, i
    return best, best_i


@njit(parallel=True, cache=True)
def _max_pool2d_forward_jit(x, y, argmax, KH, KW, SH, SW, PH, PW, DH, DW):
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    h0, kh_lo, kh_hi = _windows_jit(OH, SH, PH, KH, DH, H)
    w0, kw_lo, kw_hi = _windows_jit(OW, SW, PW, KW, DW, W)
    xf, yf, af = x.reshape(-1), y.reshape(-1), argmax.reshape(-1)
    for p in prange(N * C):
        plane, out = p * H * W, p * OH * OW
        for oh in range(OH):
            for ow in range(OW):
                yf[np.uint64(out + oh * OW + ow)], af[np.uint64(out + oh * OW + ow)] = _max_window_jit(
                    xf, plane, W, h0[oh], kh_lo[oh], kh_hi[oh], DH, w0[ow], kw_lo[ow], kw_hi[ow], DW)


# Max pooling with the window compiled in, for the windows the classic networks use.  The kernel above takes
# the geometry at run time: its tap loops cannot be unrolled, and the argmax with PyTorch's NaN rule makes them
# branchy (about 3 ns a tap).  For ``COMPILED_WINDOWS``, a kernel is compiled with KH, KW, SH, SW as constants
# (a closure: Numba freezes its variables; one kernel per window, cached like the others).  A window inside
# the input takes a branch-free running max, which the compiler vectorises along the output row; for the
# argmax, a second pass over the window in reverse keeps the first tap equal to the maximum (a window whose
# maximum is NaN takes a scalar pass: the last NaN, PyTorch's rule).  Windows that reach into the padding or
# past the edge take the general loop.  Measured on one thread, ms (general /
# compiled with the argmax / compiled, values only):
#   (16, 64, 32, 32) 3x3/2 pad 1    9.1 / 4.5 / 2.6      (resnet18 at 64x64)
#   (1, 64, 112, 112) 3x3/2 pad 1   5.8 / 2.8 / 0.8      (resnet50 at 224x224, batch 1)
#   (16, 480, 8, 8) 3x3/1 pad 1    14.2 / 9.0 / 6.0      (a GoogLeNet branch at 64x64)
#   (1, 64, 224, 224) 2x2/2        15.0 / 3.6 / 2.9      (VGG's first)
#   (16, 832, 2, 2) 3x3/1 pad 1     0.9 / 1.0 / 0.9      (every window reaches into the padding)
# Other windows keep the general kernel: each new geometry would cost a compilation.
COMPILED_WINDOWS = frozenset({(3, 3, 1, 1), (3, 3, 2, 2), (2, 2, 2, 2)})  # (KH, KW, SH, SW), dilation 1
_compiled = {}  # (KH, KW, SH, SW, with_argmax) -> kernel


@njit(cache=True)
def _inside_jit(O, S, P, K, size):
    """Along one axis, the output positions [lo, hi) whose window (dilation 1) lies inside the input."""
    lo = min((P + S - 1) // S, O)
    return lo, max(min((size - K + P) // S + 1, O), lo)


def _compiled_max_pool(KH, KW, SH, SW, ARGMAX):
    """The max-pooling kernel of one window, its geometry compiled in; ``argmax`` is ignored without ARGMAX."""
    @njit(parallel=True, cache=True)
    def max_pool(x, y, argmax, PH, PW):
        N, C, H, W = x.shape
        OH, OW = y.shape[2], y.shape[3]
        h0, kh_lo, kh_hi = _windows_jit(OH, SH, PH, KH, 1, H)
        w0, kw_lo, kw_hi = _windows_jit(OW, SW, PW, KW, 1, W)
        ih0, ih1 = _inside_jit(OH, SH, PH, KH, H)
        iw0, iw1 = _inside_jit(OW, SW, PW, KW, W)
        xf, yf, af = x.reshape(-1), y.reshape(-1), argmax.reshape(-1)
        for p in prange(N * C):
            plane, out = p * H * W, p * OH * OW
            for oh in range(OH):
                row = out + oh * OW
                lo, hi = (iw0, iw1) if ih0 <= oh < ih1 else (OW, OW)  # this row's windows inside x
                for ow in range(lo, hi):
                    i0 = h0[oh] * W + w0[ow]
                    best = xf[np.uint64(plane + i0)]
                    for kh in range(KH):
                        for kw in range(KW):
                            v = xf[np.uint64(plane + i0 + kh * W + kw)]
                            best = v if (v > best) | (v != v) else best  # a NaN wins, then stays
                    yf[np.uint64(row + ow)] = best
                    if ARGMAX:
                        k = i0
                        for kh in range(KH - 1, -1, -1):  # in reverse: the first tap equal to the max is kept
                            for kw in range(KW - 1, -1, -1):
                                k = i0 + kh * W + kw if xf[np.uint64(plane + i0 + kh * W + kw)] == best else k
                        if best != best:  # the maximum is NaN: the last NaN
                            for kh in range(KH):
                                for kw in range(KW):
                                    v = xf[np.uint64(plane + i0 + kh * W + kw)]
                                    k = i0 + kh * W + kw if v != v else k
                        af[np.uint64(row + ow)] = k
                for ow in range(OW):
                    if lo <= ow < hi:
                        continue
                    best, k = _max_window_jit(xf, plane, W, h0[oh], kh_lo[oh], kh_hi[oh], 1, w0[ow], kw_lo[ow],
                                              kw_hi[ow], 1)
                    yf[np.uint64(row + ow)] = best
                    if ARGMAX:
                        af[np.uint64(row + ow)] = k
    return max_pool


def _max_pool_cpu(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, with_argmax):
    N, C = x.shape[:2]
    compiled = (KH, KW, SH, SW) in COMPILED_WINDOWS and DH == DW == 1
    x, y = np.ascontiguousarray(x), np.empty((N, C, OH, OW), x.dtype)
    argmax = np.empty((N, C, OH, OW) if with_argmax or not compiled else (0,), np.int64)
    if not compiled:
        _max_pool2d_forward_jit(x, y, argmax, KH, KW, SH, SW, PH, PW, DH, DW)
        return y, argmax
    key = (KH, KW, SH, SW, with_argmax)
    if key not in _compiled:
        _compiled[key] = _compiled_max_pool(*key)
    _compiled[key](x, y, argmax, PH, PW)
    return y, argmax


@njit(parallel=True, cache=True)
def _max_pool2d_backward_jit(gy, argmax, gx):
    N, C, OH, OW = gy.shape
    HW = gx.shape[2] * gx.shape[3]
    gyf, af, gxf = gy.reshape(-1), argmax.reshape(-1), gx.reshape(-1)
    for p in prange(N * C):
        for j in range(p * OH * OW, (p + 1) * OH * OW):
            gxf[np.uint64(p * HW + af[np.uint64(j)])] += gyf[np.uint64(j)]


@njit(cache=True)
def _avg_bounds_jit(H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override):
    """The clipped window bounds along each axis, and PyTorch's divisor of every output cell (float64)."""
    h0, h1, w0, w1 = np.empty(OH, np.int64), np.empty(OH, np.int64), np.empty(OW, np.int64), np.empty(OW, np.int64)
    div = np.empty((OH, OW), np.float64)
    for oh in range(OH):
        for ow in range(OW):
            h0[oh], h1[oh], w0[ow], w1[ow], div[oh, ow] = _avg_window_jit(
                oh, ow, H, W, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override)
    return h0, h1, w0, w1, div


@njit(parallel=True, cache=True)
def _avg_pool2d_forward_jit(x, y, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override):
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    h0, h1, w0, w1, div = _avg_bounds_jit(H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override)
    xf, yf = x.reshape(-1), y.reshape(-1)
    for p in prange(N * C):
        plane, out = p * H * W, p * OH * OW
        for oh in range(OH):
            for ow in range(OW):
                total = 0.0                   # accumulated in float64, stored in x's dtype
                for h in range(h0[oh], h1[oh]):
                    for w in range(w0[ow], w1[ow]):
                        total += xf[np.uint64(plane + h * W + w)]
                yf[np.uint64(out + oh * OW + ow)] = total / div[oh, ow]


@njit(parallel=True, cache=True)
def _avg_pool2d_backward_jit(gy, gx, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override):
    N, C, OH, OW = gy.shape
    H, W = gx.shape[2], gx.shape[3]
    h0, h1, w0, w1, div = _avg_bounds_jit(H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override)
    gyf, gxf = gy.reshape(-1), gx.reshape(-1)
    for p in prange(N * C):
        plane, out = p * H * W, p * OH * OW
        for oh in range(OH):
            for ow in range(OW):
                g = gyf[np.uint64(out + oh * OW + ow)] / div[oh, ow]
                for h in range(h0[oh], h1[oh]):
                    for w in range(w0[ow], w1[ow]):
                        gxf[np.uint64(plane + h * W + w)] += g


def max_pool2d_forward_cpu(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    return _max_pool_cpu(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, True)


def max_pool2d_values_cpu(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    return _max_pool_cpu(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, False)[0]


def max_pool2d_backward_cpu(gy, argmax, H, W):
    gx = np.zeros(gy.shape[:2] + (H, W), gy.dtype)
    _max_pool2d_backward_jit(np.ascontiguousarray(gy), np.ascontiguousarray(argmax), gx)
    return gx


# Tiled average pooling: windows that tile the input (kernel = stride, no padding, every window inside x), as
# LeNet-5's 2x2/2 subsampling.  Every divisor is then the same, and each window row is a strided run that the
# compiler vectorises: tap (kh, kw) adds x's row oh*SH + kh, from column kw in steps of SW, to y's row oh.
def _tiles(H, W, KH, KW, SH, SW, PH, PW, OH, OW):
    return KH == SH and KW == SW and PH == 0 and PW == 0 and OH * SH <= H and OW * SW <= W


@njit(parallel=True, cache=True)
def _avg_pool2d_tiled_forward_jit(x, y, SH, SW, scale):
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    xf, yf = x.reshape(-1), y.reshape(-1)
    for p in prange(N * C):
        plane, out = p * H * W, p * OH * OW
        for oh in range(OH):
            row = out + oh * OW
            for ow in range(OW):
                yf[np.uint64(row + ow)] = 0
            for kh in range(SH):
                src = plane + (oh * SH + kh) * W
                for kw in range(SW):
                    for ow in range(OW):
                        yf[np.uint64(row + ow)] += xf[np.uint64(src + ow * SW + kw)]
            for ow in range(OW):
                yf[np.uint64(row + ow)] *= scale


@njit(parallel=True, cache=True)
def _avg_pool2d_tiled_backward_jit(gy, gx, SH, SW, scale):
    N, C, OH, OW = gy.shape
    H, W = gx.shape[2], gx.shape[3]
    gyf, gxf = gy.reshape(-1), gx.reshape(-1)
    for p in prange(N * C):
        plane, out = p * H * W, p * OH * OW
        for oh in range(OH):
            row = out + oh * OW
            for kh in range(SH):
                dst = plane + (oh * SH + kh) * W
                for kw in range(SW):
                    for ow in range(OW):  # the windows do not overlap: each x element gets one share
                        gxf[np.uint64(dst + ow * SW + kw)] = gyf[np.uint64(row + ow)] * scale


def avg_pool2d_forward_cpu(x, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override):
    y = np.empty(x.shape[:2] + (OH, OW), x.dtype)
    if _tiles(*x.shape[2:], KH, KW, SH, SW, PH, PW, OH, OW):
        scale = x.dtype.type(1 / (divisor_override or KH * KW))
        _avg_pool2d_tiled_forward_jit(np.ascontiguousarray(x), y, SH, SW, scale)
        return y
    _avg_pool2d_forward_jit(np.ascontiguousarray(x), y, KH, KW, SH, SW, PH, PW, bool(count_include_pad),
                            int(divisor_override or 0))
    return y


def avg_pool2d_backward_cpu(gy, H, W, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override):
    OH, OW = gy.shape[2:]
    if _tiles(H, W, KH, KW, SH, SW, PH, PW, OH, OW):
        # rows and columns past the last window get no gradient: zeros only when there are any
        gx = (np.empty if (OH * SH, OW * SW) == (H, W) else np.zeros)(gy.shape[:2] + (H, W), gy.dtype)
        scale = gy.dtype.type(1 / (divisor_override or KH * KW))
        _avg_pool2d_tiled_backward_jit(np.ascontiguousarray(gy), gx, SH, SW, scale)
        return gx
    gx = np.zeros(gy.shape[:2] + (H, W), gy.dtype)
    _avg_pool2d_backward_jit(np.ascontiguousarray(gy), gx, KH, KW, SH, SW, PH, PW, bool(count_include_pad),
                             int(divisor_override or 0))
    return gx
