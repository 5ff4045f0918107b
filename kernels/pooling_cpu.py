"""The Numba CPU twins of the pooling kernels (``pooling.py`` states the kernels and holds their references).

Parallel over the N*C planes.  The windows the classic networks use are compiled with their geometry as
constants: max pooling's ``COMPILED_WINDOWS``, and average pooling's tiled windows over short rows
(``COMPILED_AVG_MAX_OW``).  Float32 and float64.
"""
import math

import numpy as np
from numba import njit, prange

from .pooling import _avg_window, _window

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


# The tiled windows over rows of at most COMPILED_AVG_MAX_OW outputs (LeNet-5's 2x2/2 over 28 and 10 columns,
# DenseNet's transitions at 64x64) are compiled with SH, SW and OW as constants: the loops above have a run-time
# row length, so a row shorter than one AVX-512 vector ran in the scalar remainder.  The forward sums a row of
# windows in registers; the same additions in the same order, so the same bits.  One thread, ms (general /
# compiled), forward and backward:
#   (64, 6, 28, 28) 2x2/2     0.195 / 0.055     0.129 / 0.090     (LeNet-5's S2 at batch 64)
#   (64, 16, 10, 10) 2x2/2    0.149 / 0.029     0.119 / 0.033     (S4)
#   (16, 128, 16, 16) 2x2/2   0.491 / 0.230     0.194 / 0.154
COMPILED_AVG_MAX_OW = 16
_compiled_avg = {}  # (SH, SW, OW) -> (forward, backward)


def _compiled_tiled_avg_pool(SH, SW, OW):
    """The forward and backward kernels of tiled SH x SW windows over rows of OW outputs."""
    @njit(parallel=True, cache=True)
    def forward(x, y, scale):
        N, C, H, W = x.shape
        OH = y.shape[2]
        xf, yf = x.reshape(-1), y.reshape(-1)
        for p in prange(N * C):
            plane, out = p * H * W, p * OH * OW
            for oh in range(OH):
                acc = np.zeros(OW, x.dtype)
                for kh in range(SH):
                    src = plane + (oh * SH + kh) * W
                    for kw in range(SW):
                        for ow in range(OW):
                            acc[ow] += xf[np.uint64(src + ow * SW + kw)]
                for ow in range(OW):
                    yf[np.uint64(out + oh * OW + ow)] = acc[ow] * scale

    @njit(parallel=True, cache=True)
    def backward(gy, gx, scale):
        N, C, OH = gy.shape[0], gy.shape[1], gy.shape[2]
        H, W = gx.shape[2], gx.shape[3]
        gyf, gxf = gy.reshape(-1), gx.reshape(-1)
        for p in prange(N * C):
            plane, out = p * H * W, p * OH * OW
            for oh in range(OH):
                for kh in range(SH):
                    dst = plane + (oh * SH + kh) * W
                    for kw in range(SW):
                        for ow in range(OW):
                            gxf[np.uint64(dst + ow * SW + kw)] = gyf[np.uint64(out + oh * OW + ow)] * scale
    return forward, backward


def _tiled_avg_kernels(SH, SW, OW):
    """The compiled (forward, backward) for this window and row length, or None: the general tiled loops."""
    if OW > COMPILED_AVG_MAX_OW:
        return None
    key = (SH, SW, OW)
    if key not in _compiled_avg:
        _compiled_avg[key] = _compiled_tiled_avg_pool(*key)
    return _compiled_avg[key]


def avg_pool2d_forward_cpu(x, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override):
    y = np.empty(x.shape[:2] + (OH, OW), x.dtype)
    if _tiles(*x.shape[2:], KH, KW, SH, SW, PH, PW, OH, OW):
        scale = x.dtype.type(1 / (divisor_override or KH * KW))
        compiled = _tiled_avg_kernels(SH, SW, OW)
        if compiled is None:
            _avg_pool2d_tiled_forward_jit(np.ascontiguousarray(x), y, SH, SW, scale)
        elif y.size:
            compiled[0](np.ascontiguousarray(x), y, scale)
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
        compiled = _tiled_avg_kernels(SH, SW, OW)
        if compiled is None:
            _avg_pool2d_tiled_backward_jit(np.ascontiguousarray(gy), gx, SH, SW, scale)
        elif gy.size:
            compiled[1](np.ascontiguousarray(gy), gx, scale)
        return gx
    gx = np.zeros(gy.shape[:2] + (H, W), gy.dtype)
    _avg_pool2d_backward_jit(np.ascontiguousarray(gy), gx, KH, KW, SH, SW, PH, PW, bool(count_include_pad),
                             int(divisor_override or 0))
    return gx
