"""Depthwise convolution on a GPU: the ``numba.cuda`` kernels and the ``depthwise_conv2d*_cuda`` entry points
(the math: ``depthwise.py``).
"""
import functools

import numpy as np
from numba import cuda, from_dtype

from .im2col import _blocks, _THREADS


@cuda.jit
def _forward_kernel(x, w, y, SH, SW, PH, PW, DH, DW, zero):
    N, C, H, W = x.shape
    K, KH, KW = w.shape
    OH, OW = y.shape[2], y.shape[3]
    M = K // C
    for i in range(cuda.grid(1), N * K * OH * OW, cuda.gridsize(1)):  # one thread per output element
        ow = i % OW
        oh = (i // OW) % OH
        k = (i // (OW * OH)) % K
        n = i // (OW * OH * K)
        c = k // M
        acc = zero
        for kh in range(KH):
            h = oh * SH - PH + kh * DH
            if 0 <= h < H:
                for kw in range(KW):
                    ww = ow * SW - PW + kw * DW
                    if 0 <= ww < W:
                        acc += w[k, kh, kw] * x[n, c, h, ww]
        y[n, k, oh, ow] = acc


@cuda.jit
def _grad_input_kernel(gy, w, gx, SH, SW, PH, PW, DH, DW, zero):
    N, K, OH, OW = gy.shape
    KH, KW = w.shape[1], w.shape[2]
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    M = K // C
    for i in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):  # one thread per input element (gather)
        ww = i % W
        h = (i // W) % H
        c = (i // (W * H)) % C
        n = i // (W * H * C)
        acc = zero
        for kh in range(KH):
            th = h + PH - kh * DH  # = oh * SH for the window that puts tap kh on row h
            if th < 0 or th % SH != 0 or th // SH >= OH:
                continue
            for kw in range(KW):
                tw = ww + PW - kw * DW
                if tw < 0 or tw % SW != 0 or tw // SW >= OW:
                    continue
                for k in range(c * M, c * M + M):
                    acc += w[k, kh, kw] * gy[n, k, th // SH, tw // SW]
        gx[n, c, h, ww] = acc


@functools.lru_cache(maxsize=None)
def _grad_weight_kernel(dtype, threads):
    """One block per weight (k, kh, kw): its threads stride over N*OH*OW, then a tree sum in shared memory.

    Built per dtype and block size (a power of two), which fix the shared buffer at compile time.
    """
    sm_type = from_dtype(np.dtype(dtype))

    @cuda.jit
    def kernel(x, gy, gw, SH, SW, PH, PW, DH, DW, zero):
        N, C, H, W = x.shape
        K, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3]
        KH, KW = gw.shape[1], gw.shape[2]
        M = K // C
        partial = cuda.shared.array(threads, dtype=sm_type)
        t = cuda.threadIdx.x
        for job in range(cuda.blockIdx.x, K * KH * KW, cuda.gridDim.x):
            k, kh, kw = job // (KH * KW), (job // KW) % KH, job % KW
            c = k // M
            acc = zero
            for j in range(t, N * OH * OW, threads):
                ow = j % OW
                oh = (j // OW) % OH
                n = j // (OW * OH)
                h = oh * SH - PH + kh * DH
                ww = ow * SW - PW + kw * DW
                if 0 <= h < H and 0 <= ww < W:
                    acc += gy[n, k, oh, ow] * x[n, c, h, ww]
            partial[t] = acc
            cuda.syncthreads()
            step = threads // 2
            while step > 0:
                if t < step:
                    partial[t] += partial[t + step]
                cuda.syncthreads()
                step //= 2
            if t == 0:
                gw[k, kh, kw] = partial[0]
            cuda.syncthreads()  # partial is reused by the block's next weight

    return kernel


def depthwise_conv2d_cuda(x, w, SH, SW, PH, PW, DH, DW, OH, OW):
    """CUDA forward: one thread per output element; returns a Numba device array."""
    y = cuda.device_array((x.shape[0], w.shape[0], OH, OW), dtype=x.dtype)
    _forward_kernel[_blocks(y.size), _THREADS](x, w, y, SH, SW, PH, PW, DH, DW, x.dtype.type(0))
    return y


def depthwise_conv2d_grad_input_cuda(gy, w, C, H, W, SH, SW, PH, PW, DH, DW):
    """CUDA input gradient: one thread per input element, gathering the taps that read it."""
    gx = cuda.device_array((gy.shape[0], C, H, W), dtype=gy.dtype)
    _grad_input_kernel[_blocks(gx.size), _THREADS](gy, w, gx, SH, SW, PH, PW, DH, DW, gy.dtype.type(0))
    return gx


def depthwise_conv2d_grad_weight_cuda(x, gy, KH, KW, SH, SW, PH, PW, DH, DW):
    """CUDA weight gradient: one block per weight, a shared-memory reduction over N*OH*OW."""
    N, K, OH, OW = gy.shape
    gw = cuda.device_array((K, KH, KW), dtype=gy.dtype)
    threads = 32  # a power of two from 32 to _THREADS, no larger than the reduction needs
    while threads < _THREADS and threads < N * OH * OW:
        threads *= 2
    kernel = _grad_weight_kernel(np.dtype(gy.dtype).str, threads)
    kernel[min(K * KH * KW, 65535), threads](x, gy, gw, SH, SW, PH, PW, DH, DW, gy.dtype.type(0))
    return gw


def depthwise_conv2d_backward_cuda(x, gy, w, SH, SW, PH, PW, DH, DW):
    """CUDA input and weight gradients: the two kernels above, one after the other."""
    (C, H, W), (KH, KW) = x.shape[1:], w.shape[1:]
    return (depthwise_conv2d_grad_input_cuda(gy, w, C, H, W, SH, SW, PH, PW, DH, DW),
            depthwise_conv2d_grad_weight_cuda(x, gy, KH, KW, SH, SW, PH, PW, DH, DW))
