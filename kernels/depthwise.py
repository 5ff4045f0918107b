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

The work is O(N*K*OH*OW*KH*KW), against a GEMM whose every group would be a (M x KH*KW) matrix: too thin
for BLAS to be worth the col buffer.
"""
import functools

import numpy as np
from numba import cuda, from_dtype, njit, prange

from .im2col import _blocks, _far_padding, _THREADS, _valid_range


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


# -- Numba CPU ----------------------------------------------------------------------------------------
# Each kernel walks rows: one output (or gradient) row meets one input row per tap, at a fixed offset.  The
# helpers take the two rows as slices that start at index 0, so that LLVM sees plain non-negative indices
# (no negative-index wraparound test) and, for stride 1, unit-stride loops it turns into SIMD.  Forward and
# input gradient add in the reference's order, term by term (no fastmath: bitwise the NumPy reference's
# sums, which batch norm over tiny batches can amplify); the weight gradient's long dot products are
# reassociated (fastmath) so that they vectorise too.
@njit(cache=True, inline="always")
def _tap_axpy(y, row, ow0, ow1, off, S, a, scatter):
    """``y[i] += a * row[(ow0 + i)*S + off]`` (or, with ``scatter``, the reverse: ``row[...] += a * y[i]``)
    for i in [0, ow1 - ow0): the tap's elements of ``row`` as a view, contiguous when ``S == 1``."""
    if ow1 <= ow0:
        return
    if S == 1:
        taps = row[ow0 + off:ow1 + off]
        if scatter:
            _axpy(taps, y, a)
        else:
            _axpy(y, taps, a)
    else:
        taps = row[ow0 * S + off:(ow1 - 1) * S + off + 1:S]
        if scatter:
            _axpy(taps, y, a)
        else:
            _axpy(y, taps, a)


@njit(cache=True, inline="always")
def _tap_dot(y, row, ow0, ow1, off, S):
    """``sum_i y[i] * row[(ow0 + i)*S + off]`` over i in [0, ow1 - ow0)."""
    if ow1 <= ow0:
        return 0.0
    if S == 1:
        return _dot(y, row[ow0 + off:ow1 + off])
    return _dot(y, row[ow0 * S + off:(ow1 - 1) * S + off + 1:S])


@njit(cache=True, inline="always")
def _axpy(y, x, a):
    """``y += a * x`` elementwise."""
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@njit(cache=True, inline="always", fastmath=True)
def _dot(a, b):
    """``sum(a * b)``, accumulated in float64."""
    total = 0.0
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@njit(parallel=True, cache=True)
def _forward_cpu(x, w, y, SH, SW, PH, PW, DH, DW):
    N, C, H, W = x.shape
    K, KH, KW = w.shape
    OH, OW = y.shape[2], y.shape[3]
    M = K // C
    for job in prange(N * K):  # one output plane per job
        n, k = job // K, job % K
        xc, yk = x[n, k // M], y[n, k]
        for oh in range(OH):
            for kh in range(KH):
                h = oh * SH - PH + kh * DH
                if 0 <= h < H:
                    for kw in range(KW):
                        ow0, ow1 = _valid_range(PW, kw * DW, SW, W, OW)
                        _tap_axpy(yk[oh, ow0:ow1], xc[h], ow0, ow1, kw * DW - PW, SW, w[k, kh, kw], False)


@njit(parallel=True, cache=True)
def _grad_input_cpu(gy, w, gx, SH, SW, PH, PW, DH, DW):
    N, K, OH, OW = gy.shape
    _, KH, KW = w.shape
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    M = K // C
    for job in prange(N * C):  # each job owns one (n, c) plane of gx: the scatter-add has no races
        n, c = job // C, job % C
        gxc = gx[n, c]
        for k in range(c * M, c * M + M):
            gk = gy[n, k]
            for oh in range(OH):
                for kh in range(KH):
                    h = oh * SH - PH + kh * DH
                    if 0 <= h < H:
                        for kw in range(KW):
                            ow0, ow1 = _valid_range(PW, kw * DW, SW, W, OW)
                            _tap_axpy(gk[oh, ow0:ow1], gxc[h], ow0, ow1, kw * DW - PW, SW, w[k, kh, kw], True)


@njit(parallel=True, cache=True, fastmath=True)
def _grad_weight_cpu(x, gy, gw, SH, SW, PH, PW, DH, DW):
    N, C, H, W = x.shape
    K, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3]
    KH, KW = gw.shape[1], gw.shape[2]
    M = K // C
    for k in prange(K):  # one filter per job: each gy row meets the KH x KW input rows of its taps
        c = k // M
        acc = np.zeros((KH, KW))  # float64 partial sums: the reduction is long (N*OH*OW terms)
        for n in range(N):
            xc, gk = x[n, c], gy[n, k]
            for oh in range(OH):
                for kh in range(KH):
                    h = oh * SH - PH + kh * DH
                    if 0 <= h < H:
                        for kw in range(KW):
                            ow0, ow1 = _valid_range(PW, kw * DW, SW, W, OW)
                            acc[kh, kw] += _tap_dot(gk[oh, ow0:ow1], xc[h], ow0, ow1, kw * DW - PW, SW)
        for kh in range(KH):
            for kw in range(KW):
                gw[k, kh, kw] = acc[kh, kw]


# Results are allocated by NumPy (huge pages for large arrays; see im2col.py) and filled by the kernels.
def depthwise_conv2d_cpu(x, w, SH, SW, PH, PW, DH, DW, OH, OW):
    """Numba forward, parallel over output planes (n, k)."""
    y = np.zeros((x.shape[0], w.shape[0], OH, OW), x.dtype)
    _forward_cpu(np.ascontiguousarray(x), np.ascontiguousarray(w), y, SH, SW, PH, PW, DH, DW)
    return y


def depthwise_conv2d_grad_input_cpu(gy, w, C, H, W, SH, SW, PH, PW, DH, DW):
    """Numba input gradient, parallel over input planes (n, c)."""
    gx = np.zeros((gy.shape[0], C, H, W), gy.dtype)
    _grad_input_cpu(np.ascontiguousarray(gy), np.ascontiguousarray(w), gx, SH, SW, PH, PW, DH, DW)
    return gx


def depthwise_conv2d_grad_weight_cpu(x, gy, KH, KW, SH, SW, PH, PW, DH, DW):
    """Numba weight gradient, parallel over the K filters."""
    gw = np.empty((gy.shape[1], KH, KW), gy.dtype)
    _grad_weight_cpu(np.ascontiguousarray(x), np.ascontiguousarray(gy), gw, SH, SW, PH, PW, DH, DW)
    return gw


# -- numba.cuda ---------------------------------------------------------------------------------------
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

