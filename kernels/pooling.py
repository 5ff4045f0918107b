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

Each kernel comes as ``_numpy`` (readable NumPy reference, here), ``_cpu`` (Numba in ``pooling_cpu.py``,
parallel over the N*C planes; the common windows compiled with their geometry as constants) and ``_cuda``
(numba.cuda in ``pooling_cuda.py``, one thread per output element; max backward scatters with atomic adds, avg
backward runs one thread per input element that gathers from the windows covering it).  Float32 and float64;
the CUDA kernels compute in the array's dtype.
"""

import numpy as np


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
