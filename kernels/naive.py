"""The convolution as the loops of its definition (``conv_algorithm('naive')``, for teaching): no im2col, no
transforms, every multiply-add written out.

    y[n, k, oh, ow] = b[k] + sum_{c, kh, kw} w[k, c, kh, kw] * x[n, g*Cg + c, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]
    dx[n, g*Cg + c, h, v] += w[k, c, kh, kw] * dy[n, k, oh, ow]        for every (oh, ow, kh, kw) reaching (h, v)
    dw[k, c, kh, kw]      += dy[n, k, oh, ow] * x[n, g*Cg + c, h, v]   the same pairs

with k in group g = k // (K/G), Cg = C/G input channels per group, and taps outside x reading zero.

Kernels: ``naive_conv2d(x, w, b, SH, SW, PH, PW, DH, DW, OH, OW, G) -> y`` and ``naive_conv2d_backward(gy, x, w,
SH, SW, PH, PW, DH, DW, G, need_x, need_w) -> (gx, gw)``.  ``_numpy`` loops over the taps (kh, kw) and the input
channels, each step one whole-array multiply-add; ``_cpu`` (Numba) is the seven nested loops themselves.
"""
import numpy as np
from numba import njit, prange


# -- NumPy reference: one tap and input channel at a time ---------------------------------------------
def _tap(size, O, S, P, D, k):
    """Output positions o whose tap k reads inside [0, size): (o0, o1, first input index)."""
    o0 = max(0, -(-(P - k * D) // S))
    o1 = min(O, (size - 1 + P - k * D) // S + 1)
    return o0, max(o0, o1), o0 * S - P + k * D


def _taps(H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW):
    """For each tap (kh, kw) that reads inside x: ``(kh, kw, out, inp)``, the output positions it serves and the
    input positions it reads there (two slices each, the same number of rows and columns)."""
    for kh in range(KH):
        oh0, oh1, h0 = _tap(H, OH, SH, PH, DH, kh)
        for kw in range(KW):
            ow0, ow1, v0 = _tap(W, OW, SW, PW, DW, kw)
            if oh1 > oh0 and ow1 > ow0:
                yield kh, kw, (slice(oh0, oh1), slice(ow0, ow1)), \
                    (slice(h0, h0 + (oh1 - oh0 - 1) * SH + 1, SH), slice(v0, v0 + (ow1 - ow0 - 1) * SW + 1, SW))


def naive_conv2d_numpy(x, w, b, SH, SW, PH, PW, DH, DW, OH, OW, G, *, xp=np):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    y = xp.zeros((N, K, OH, OW), x.dtype)
    for kh, kw, (oh, ow), (h, v) in _taps(H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW):
        for k in range(K):
            g = k // (K // G)
            for c in range(Cg):  # y[:, k] += w[k, c, kh, kw] * x[:, c] at this tap's positions
                y[:, k, oh, ow] += w[k, c, kh, kw] * x[:, g * Cg + c, h, v]
    if b is not None:
        y += b.reshape(K, 1, 1)
    return y


def naive_conv2d_backward_numpy(gy, x, w, SH, SW, PH, PW, DH, DW, G, need_x, need_w, *, xp=np):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    OH, OW = gy.shape[2:]
    gx = xp.zeros(x.shape, gy.dtype) if need_x else None
    gw = xp.zeros(w.shape, gy.dtype) if need_w else None
    for kh, kw, (oh, ow), (h, v) in _taps(H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW):
        for k in range(K):
            g = k // (K // G)
            d = gy[:, k, oh, ow]
            for c in range(Cg):  # the forward's multiply-add, read backwards for each operand
                if need_x:
                    gx[:, g * Cg + c, h, v] += w[k, c, kh, kw] * d
                if need_w:
                    gw[k, c, kh, kw] += (d * x[:, g * Cg + c, h, v]).sum()
    return gx, gw


# -- Numba CPU: the seven loops ----------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _forward(x, w, y, SH, SW, PH, PW, DH, DW, G):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    OH, OW = y.shape[2:]
    for nk in prange(N * K):                                  # every output value ...
        n, k = nk // K, nk % K
        g = k // (K // G)
        for oh in range(OH):
            for ow in range(OW):
                s = y[n, k, oh, ow]                            # (the bias, or 0)
                for c in range(Cg):                            # ... sums its window over the group's channels
                    for kh in range(KH):
                        h = oh * SH - PH + kh * DH
                        if 0 <= h < H:
                            for kw in range(KW):
                                v = ow * SW - PW + kw * DW
                                if 0 <= v < W:
                                    s += w[k, c, kh, kw] * x[n, g * Cg + c, h, v]
                y[n, k, oh, ow] = s


@njit(parallel=True, cache=True)
def _grad_input(gy, w, gx, SH, SW, PH, PW, DH, DW, G):
    N, C, H, W = gx.shape
    K, Cg, KH, KW = w.shape
    OH, OW = gy.shape[2:]
    Kg = K // G
    for nc in prange(N * C):                                   # every input value (one plane per iteration) ...
        n, ci = nc // C, nc % C
        g, c = ci // Cg, ci % Cg
        for k in range(g * Kg, (g + 1) * Kg):                  # ... collects from every output that read it
            for oh in range(OH):
                for kh in range(KH):
                    h = oh * SH - PH + kh * DH
                    if 0 <= h < H:
                        for ow in range(OW):
                            for kw in range(KW):
                                v = ow * SW - PW + kw * DW
                                if 0 <= v < W:
                                    gx[n, ci, h, v] += w[k, c, kh, kw] * gy[n, k, oh, ow]


@njit(parallel=True, cache=True)
def _grad_weight(gy, x, gw, SH, SW, PH, PW, DH, DW, G):
    N, C, H, W = x.shape
    K, Cg, KH, KW = gw.shape
    OH, OW = gy.shape[2:]
    for kc in prange(K * Cg):                                  # every weight ...
        k, c = kc // Cg, kc % Cg
        ci = (k // (K // G)) * Cg + c
        for kh in range(KH):
            for kw in range(KW):
                s = 0.0
                for n in range(N):                             # ... sums dy times what it multiplied
                    for oh in range(OH):
                        h = oh * SH - PH + kh * DH
                        if 0 <= h < H:
                            for ow in range(OW):
                                v = ow * SW - PW + kw * DW
                                if 0 <= v < W:
                                    s += gy[n, k, oh, ow] * x[n, ci, h, v]
                gw[k, c, kh, kw] = s


def naive_conv2d_cpu(x, w, b, SH, SW, PH, PW, DH, DW, OH, OW, G):
    K = w.shape[0]
    y = np.zeros((x.shape[0], K, OH, OW), x.dtype)
    if b is not None:
        y += b.astype(x.dtype).reshape(K, 1, 1)
    _forward(np.ascontiguousarray(x), np.ascontiguousarray(w, x.dtype), y, SH, SW, PH, PW, DH, DW, G)
    return y


def naive_conv2d_backward_cpu(gy, x, w, SH, SW, PH, PW, DH, DW, G, need_x, need_w):
    gy, x, w = np.ascontiguousarray(gy), np.ascontiguousarray(x), np.ascontiguousarray(w, gy.dtype)
    gx = gw = None
    if need_x:
        gx = np.zeros(x.shape, gy.dtype)
        _grad_input(gy, w, gx, SH, SW, PH, PW, DH, DW, G)
    if need_w:
        gw = np.empty(w.shape, gy.dtype)
        _grad_weight(gy, x, gw, SH, SW, PH, PW, DH, DW, G)
    return gx, gw
