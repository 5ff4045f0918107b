"""Grouped convolution on a GPU: the ``numba.cuda`` kernels and the ``grouped_conv2d*_cuda`` entry points (the
math and the NumPy reference: ``grouped.py``).
"""
from numba import cuda

from .im2col import _blocks, _THREADS

@cuda.jit
def _forward_kernel(x, w, y, SH, SW, PH, PW, DH, DW, zero):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    OH, OW = y.shape[2], y.shape[3]
    Kg = K // (C // Cg)
    for i in range(cuda.grid(1), N * K * OH * OW, cuda.gridsize(1)):  # one thread per output element
        ow = i % OW
        oh = (i // OW) % OH
        k = (i // (OW * OH)) % K
        n = i // (OW * OH * K)
        c0 = (k // Kg) * Cg
        acc = zero
        for j in range(Cg):
            for kh in range(KH):
                h = oh * SH - PH + kh * DH
                if 0 <= h < H:
                    for kw in range(KW):
                        ww = ow * SW - PW + kw * DW
                        if 0 <= ww < W:
                            acc += w[k, j, kh, kw] * x[n, c0 + j, h, ww]
        y[n, k, oh, ow] = acc


@cuda.jit
def _grad_input_kernel(gy, w, gx, SH, SW, PH, PW, DH, DW, zero):
    N, K, OH, OW = gy.shape
    Cg, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    Kg = K // (C // Cg)
    for i in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):  # one thread per input element (gather)
        ww = i % W
        h = (i // W) % H
        c = (i // (W * H)) % C
        n = i // (W * H * C)
        g, j = c // Cg, c % Cg
        acc = zero
        for kh in range(KH):
            th = h + PH - kh * DH  # = oh * SH for the window that puts tap kh on row h
            if th < 0 or th % SH != 0 or th // SH >= OH:
                continue
            for kw in range(KW):
                tw = ww + PW - kw * DW
                if tw < 0 or tw % SW != 0 or tw // SW >= OW:
                    continue
                for k in range(g * Kg, g * Kg + Kg):
                    acc += w[k, j, kh, kw] * gy[n, k, th // SH, tw // SW]
        gx[n, c, h, ww] = acc


@cuda.jit
def _grad_weight_kernel(x, gy, gw, SH, SW, PH, PW, DH, DW, zero):
    N, C, H, W = x.shape
    K, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3]
    Cg, KH, KW = gw.shape[1], gw.shape[2], gw.shape[3]
    Kg = K // (C // Cg)
    for i in range(cuda.grid(1), K * Cg * KH * KW, cuda.gridsize(1)):  # one thread per weight
        kw = i % KW
        kh = (i // KW) % KH
        j = (i // (KW * KH)) % Cg
        k = i // (KW * KH * Cg)
        c = (k // Kg) * Cg + j
        acc = zero
        for n in range(N):
            for oh in range(OH):
                h = oh * SH - PH + kh * DH
                if 0 <= h < H:
                    for ow in range(OW):
                        ww = ow * SW - PW + kw * DW
                        if 0 <= ww < W:
                            acc += gy[n, k, oh, ow] * x[n, c, h, ww]
        gw[k, j, kh, kw] = acc


def grouped_conv2d_cuda(x, w, SH, SW, PH, PW, DH, DW, OH, OW):
    """CUDA forward: one thread per output element; returns a Numba device array."""
    y = cuda.device_array((x.shape[0], w.shape[0], OH, OW), dtype=x.dtype)
    _forward_kernel[_blocks(y.size), _THREADS](x, w, y, SH, SW, PH, PW, DH, DW, x.dtype.type(0))
    return y


def grouped_conv2d_grad_input_cuda(gy, w, C, H, W, SH, SW, PH, PW, DH, DW):
    """CUDA input gradient: one thread per input element, gathering the taps that read it."""
    gx = cuda.device_array((gy.shape[0], C, H, W), dtype=gy.dtype)
    _grad_input_kernel[_blocks(gx.size), _THREADS](gy, w, gx, SH, SW, PH, PW, DH, DW, gy.dtype.type(0))
    return gx


def grouped_conv2d_grad_weight_cuda(x, gy, G, KH, KW, SH, SW, PH, PW, DH, DW):
    """CUDA weight gradient: one thread per weight, looping over N*OH*OW (simple; few weights per layer)."""
    K = gy.shape[1]
    gw = cuda.device_array((K, x.shape[1] // G, KH, KW), dtype=gy.dtype)
    _grad_weight_kernel[_blocks(gw.size), _THREADS](x, gy, gw, SH, SW, PH, PW, DH, DW, gy.dtype.type(0))
    return gw
