"""Grouped 2-D convolution computed directly (no im2col), for few channels per group: forward and both gradients.

G groups split the C input channels into groups of Cg = C/G and the K output channels into groups of
Kg = K/G; output channel k (group g = k // Kg) reads input channels c = g*Cg + j, j in [0, Cg).  Shapes: x
(N, C, H, W); w (K, Cg, KH, KW) (PyTorch's layout); y (N, K, OH, OW); stride (SH, SW), top/left zero padding
(PH, PW), dilation (DH, DW); bottom/right padding is implied by OH, OW (taps outside x read zero).

    y[n, k, oh, ow] = sum_{j,kh,kw} w[k, j, kh, kw] * x[n, g*Cg + j, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]
    gx[n, c, h, w]  = sum_{k in c's group, kh, kw} w[k, c - g*Cg, kh, kw] * gy[n, k, oh, ow]
                      over the (oh, ow) whose tap (kh, kw) lands on (h, w)
    gw[k, j, kh, kw] = sum_{n,oh,ow} gy[n, k, oh, ow] * x[n, g*Cg + j, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]

Kernels (same signature for ``_numpy``, ``_cpu`` and ``_cuda``):

    grouped_conv2d(x, w, SH, SW, PH, PW, DH, DW, OH, OW)                 -> y  (N, K, OH, OW)
    grouped_conv2d_grad_input(gy, w, C, H, W, SH, SW, PH, PW, DH, DW)    -> gx (N, C, H, W)
    grouped_conv2d_grad_weight(x, gy, G, KH, KW, SH, SW, PH, PW, DH, DW) -> gw (K, Cg, KH, KW)

(G = C / w.shape[1] where x or C is given; the weight gradient needs it spelled out.)

Why: with ResNeXt's 32x4d blocks (Cg = Kg = 4, 3x3) each group's im2col GEMM is a (4 x 36) by
(36 x N*OH*OW) product, memory-bound on a column matrix 9 times the input.  Here each (n, group) copies its
Cg input planes once into a padded buffer that stays in cache, and every tap is a long unit-stride
multiply-add over a chunk of output rows (SIMD); see "Numba CPU" below.

Files: this one holds the NumPy reference (and the shape twin for ``summary``); ``grouped_cpu.py`` the Numba
kernels, ``grouped_cuda.py`` the ``numba.cuda`` ones.
"""
import numpy as np

from .im2col import _far_padding


# -- NumPy reference ----------------------------------------------------------------------------------
def _padded(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    H, W = x.shape[2:]
    return np.pad(x, ((0, 0), (0, 0), (PH, _far_padding(H, PH, KH, SH, DH, OH)),
                      (PW, _far_padding(W, PW, KW, SW, DW, OW))))


def _taps(xp, G, kh, kw, SH, SW, DH, DW, OH, OW):
    """The slice of the padded input that tap (kh, kw) multiplies, split by group: (N, G, Cg, OH, OW)."""
    t = xp[:, :, kh * DH:kh * DH + SH * (OH - 1) + 1:SH, kw * DW:kw * DW + SW * (OW - 1) + 1:SW]
    return t.reshape(t.shape[0], G, -1, OH, OW)


def grouped_conv2d_numpy(x, w, SH, SW, PH, PW, DH, DW, OH, OW):
    """Reference forward: per kernel tap, a per-group (Kg x Cg) matrix times the tap's slice of x."""
    N, C = x.shape[:2]
    K, Cg, KH, KW = w.shape
    G = C // Cg
    xp = _padded(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)
    y = np.zeros((N, G, K // G, OH, OW), x.dtype)
    wg = w.reshape(G, K // G, Cg, KH, KW)
    for kh in range(KH):
        for kw in range(KW):
            y += np.einsum("gkj,ngjab->ngkab", wg[..., kh, kw], _taps(xp, G, kh, kw, SH, SW, DH, DW, OH, OW))
    return y.reshape(N, K, OH, OW)


def grouped_conv2d_shape(x, w, SH, SW, PH, PW, DH, DW, OH, OW, *, xp=np):
    """For ``tinyconv.summary``: ``(multiply-accumulates N*K*OH*OW*Cg*KH*KW, zeros of y's shape)``."""
    K, Cg, KH, KW = w.shape
    return x.shape[0] * K * OH * OW * Cg * KH * KW, xp.zeros((x.shape[0], K, OH, OW), x.dtype)


def grouped_conv2d_grad_input_numpy(gy, w, C, H, W, SH, SW, PH, PW, DH, DW):
    """Reference input gradient: scatter-add every tap's contribution into a padded buffer."""
    N, K, OH, OW = gy.shape
    _, Cg, KH, KW = w.shape
    G = C // Cg
    gxp = np.zeros((N, C, H + PH + _far_padding(H, PH, KH, SH, DH, OH),
                    W + PW + _far_padding(W, PW, KW, SW, DW, OW)), gy.dtype)
    wg, gyg = w.reshape(G, K // G, Cg, KH, KW), gy.reshape(N, G, K // G, OH, OW)
    for kh in range(KH):
        for kw in range(KW):
            _taps(gxp, G, kh, kw, SH, SW, DH, DW, OH, OW)[...] += np.einsum("gkj,ngkab->ngjab", wg[..., kh, kw], gyg)
    return np.ascontiguousarray(gxp[:, :, PH:PH + H, PW:PW + W])


def grouped_conv2d_grad_weight_numpy(x, gy, G, KH, KW, SH, SW, PH, PW, DH, DW):
    """Reference weight gradient: for each tap, per group, gy times the slice it multiplied, summed."""
    N, K, OH, OW = gy.shape
    Cg = x.shape[1] // G
    xp = _padded(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)
    gyg = gy.reshape(N, G, K // G, OH, OW)
    gw = np.empty((G, K // G, Cg, KH, KW), gy.dtype)
    for kh in range(KH):
        for kw in range(KW):
            gw[..., kh, kw] = np.einsum("ngkab,ngjab->gkj", gyg, _taps(xp, G, kh, kw, SH, SW, DH, DW, OH, OW))
    return gw.reshape(K, Cg, KH, KW)
