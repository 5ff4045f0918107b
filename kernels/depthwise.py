"""Depthwise 2-D convolution computed directly (no im2col): forward and the two backward passes.

Depthwise means ``groups == C``: each input channel c has its own M filters (channel multiplier M), giving
output channels k = c*M + m, k in [0, K = C*M).  Shapes: x (N, C, H, W); w (K, KH, KW) (PyTorch's
(K, 1, KH, KW) with the singleton dropped); y (N, K, OH, OW); stride (SH, SW), top/left zero padding (PH, PW),
dilation (DH, DW); bottom/right padding is implied by OH, OW (taps outside x read zero).

    y[n, k, oh, ow]  = sum_{kh,kw} w[k, kh, kw] * x[n, k // M, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]
    gx[n, c, h, w]   = sum_{m,kh,kw} w[c*M + m, kh, kw] * gy[n, c*M + m, oh, ow]
                       over the (oh, ow) whose tap (kh, kw) lands on (h, w)
    gw[k, kh, kw]    = sum_{n,oh,ow} gy[n, k, oh, ow] * x[n, k // M, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]

Kernels (same signature for ``_numpy``, ``_cpu`` and ``_cuda``):

    depthwise_conv2d(x, w, SH, SW, PH, PW, DH, DW, OH, OW)                 -> y  (N, K, OH, OW)
    depthwise_conv2d_grad_input(gy, w, C, H, W, SH, SW, PH, PW, DH, DW)    -> gx (N, C, H, W)
    depthwise_conv2d_grad_weight(x, gy, KH, KW, SH, SW, PH, PW, DH, DW)    -> gw (K, KH, KW)
    depthwise_conv2d_backward(x, gy, w, SH, SW, PH, PW, DH, DW)            -> (gx, gw), reading gy once

The work is O(N*K*OH*OW*KH*KW), against a GEMM whose every group would be a (M x KH*KW) matrix: too thin
for BLAS to be worth the col buffer.

Files: this one holds the NumPy reference (and the shape twin for ``summary``); ``depthwise_cpu.py`` the Numba
kernels (over the phase-split buffers of ``depthwise_phases.py``), ``depthwise_cuda.py`` the ``numba.cuda`` ones.
"""
import numpy as np

from .im2col import _far_padding


# -- NumPy reference ----------------------------------------------------------------------------------
def _padded(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    H, W = x.shape[2:]
    return np.pad(x, ((0, 0), (0, 0), (PH, _far_padding(H, PH, KH, SH, DH, OH)),
                      (PW, _far_padding(W, PW, KW, SW, DW, OW))))


def _taps(xp, kh, kw, SH, SW, DH, DW, OH, OW):
    """The (N, C, OH, OW) slice of the padded input that tap (kh, kw) multiplies."""
    return xp[:, :, kh * DH:kh * DH + SH * (OH - 1) + 1:SH, kw * DW:kw * DW + SW * (OW - 1) + 1:SW]


def depthwise_conv2d_numpy(x, w, SH, SW, PH, PW, DH, DW, OH, OW):
    """Reference forward: one multiply-add of a strided slice per kernel tap."""
    K, KH, KW = w.shape
    M = K // x.shape[1]
    xp = _padded(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)
    y = np.zeros((x.shape[0], K, OH, OW), x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            # repeat each input channel M times so output channel k sees input channel k // M
            y += np.repeat(_taps(xp, kh, kw, SH, SW, DH, DW, OH, OW), M, axis=1) * w[:, kh, kw, None, None]
    return y


def depthwise_conv2d_shape(x, w, SH, SW, PH, PW, DH, DW, OH, OW, *, xp=np):
    """For ``tinyconv.summary``: ``(multiply-accumulates N*K*OH*OW*KH*KW, zeros of y's shape)``."""
    K, KH, KW = w.shape
    return x.shape[0] * K * OH * OW * KH * KW, xp.zeros((x.shape[0], K, OH, OW), x.dtype)


def depthwise_conv2d_grad_input_numpy(gy, w, C, H, W, SH, SW, PH, PW, DH, DW):
    """Reference input gradient: scatter-add every tap's contribution into a padded buffer."""
    N, K, OH, OW = gy.shape
    _, KH, KW = w.shape
    M = K // C
    gxp = np.zeros((N, C, H + PH + _far_padding(H, PH, KH, SH, DH, OH),
                    W + PW + _far_padding(W, PW, KW, SW, DW, OW)), gy.dtype)
    for kh in range(KH):
        for kw in range(KW):
            contrib = (gy * w[:, kh, kw, None, None]).reshape(N, C, M, OH, OW).sum(axis=2)  # sum over m
            _taps(gxp, kh, kw, SH, SW, DH, DW, OH, OW)[...] += contrib
    return np.ascontiguousarray(gxp[:, :, PH:PH + H, PW:PW + W])


def depthwise_conv2d_grad_weight_numpy(x, gy, KH, KW, SH, SW, PH, PW, DH, DW):
    """Reference weight gradient: for each tap, sum gy times the slice it multiplied."""
    N, K, OH, OW = gy.shape
    M = K // x.shape[1]
    xp = _padded(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)
    gw = np.empty((K, KH, KW), gy.dtype)
    for kh in range(KH):
        for kw in range(KW):
            taps = np.repeat(_taps(xp, kh, kw, SH, SW, DH, DW, OH, OW), M, axis=1)
            gw[:, kh, kw] = (taps * gy).sum(axis=(0, 2, 3))
    return gw


def depthwise_conv2d_backward_numpy(x, gy, w, SH, SW, PH, PW, DH, DW):
    """Reference of both gradients at once: (grad_input, grad_weight)."""
    (C, H, W), (KH, KW) = x.shape[1:], w.shape[1:]
    return (depthwise_conv2d_grad_input_numpy(gy, w, C, H, W, SH, SW, PH, PW, DH, DW),
            depthwise_conv2d_grad_weight_numpy(x, gy, KH, KW, SH, SW, PH, PW, DH, DW))
