"""Direct 2-D convolution for dense layers with few channels (G = 1, stride 1, dilation 1): forward with an
optional bias, input gradient and weight gradient, with no im2col matrix.

Shapes: x (N, C, H, W); w (K, C, KH, KW) (PyTorch's layout); b (K,) or None; y (N, K, OH, OW); top/left zero
padding (PH, PW); the bottom/right padding is implied by OH, OW (taps outside x read zero).

    y[n, k, oh, ow]  = b[k] + sum_{c,kh,kw} w[k, c, kh, kw] * x[n, c, oh - PH + kh, ow - PW + kw]
    gx[n, c, h, v]   = sum_{k,kh,kw} w[k, c, kh, kw] * gy[n, k, h + PH - kh, v + PW - kw]   (gy is 0 outside)
    gw[k, c, kh, kw] = sum_{n,oh,ow} gy[n, k, oh, ow] * x[n, c, oh - PH + kh, ow - PW + kw]

Kernels (same signature for ``_numpy`` and ``_cpu``):

    direct_conv2d(x, w, b, PH, PW, OH, OW)            -> y  (N, K, OH, OW)
    direct_conv2d_grad_input(gy, w, H, W, PH, PW)     -> gx (N, C, H, W)
    direct_conv2d_grad_weight(x, gy, KH, KW, PH, PW)  -> gw (K, C, KH, KW)

``direct_suits`` is the rule that says which layers these run (``conv_algorithms.strategy`` asks it).

Why: LeNet-5's C1 (1 -> 6 maps, 5x5 on 32x32) and C3 (6 -> 16, 5x5 on 14x14) make im2col matrices 25 and 150
rows tall for a product only 6 and 16 rows wide: the GEMM is cheap, building the matrix (25 copies of the
input) is not.  Here each image is copied once into a padded buffer that stays in L1, and every tap is one
long unit-stride multiply-add over the whole output image (see "Numba CPU" below).
"""
import numpy as np
from numba import njit, prange

from .im2col import _far_padding


def direct_suits(x_shape, w_shape, G, stride, dilation):
    """Whether the CPU runs a dense layer by these kernels: G = 1, stride 1, no dilation, at most
    ``MAX_OUT`` output maps and ``MAX_TAPS`` taps an output (C*KH*KW).  (``conv_algorithms.strategy`` asks
    this after its full-window rule: a window covering the whole image stays a GEMM.)"""
    C, (K, _, KH, KW) = x_shape[1], w_shape
    return (G == 1 and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and K <= MAX_OUT
            and C * KH * KW <= MAX_TAPS)


# Measured on the 2-core machine (load 1.2-1.5: another process on the other core), float32, one thread,
# forward + input gradient + weight gradient, best of 3 medians (ms, im2col + GEMM vs direct): LeNet C1
# 1->6 5x5 32x32 N=64 4.13 vs 3.70 (without the input gradient, as in LeNet: 3.0 vs 1.6), N=128 8.33 vs
# 7.39; 2->8 5x5 16x16 pad 2 3.10 vs 2.43; 3->16 3x3 32x32 pad 1 9.55 vs 9.16; but 1->16 5x5 32x32 6.62 vs
# 9.48, 1->32 3x3 28x28 6.61 vs 8.34 and LeNet C3 6->16 5x5 14x14 5.89 vs 8.28: with more output maps the
# GEMM's register blocking wins over two maps a pass.
MAX_TAPS = 50
MAX_OUT = 8


# -- NumPy reference ----------------------------------------------------------------------------------
def _padded(x, KH, KW, PH, PW, OH, OW):
    H, W = x.shape[2:]
    return np.pad(x, ((0, 0), (0, 0), (PH, _far_padding(H, PH, KH, 1, 1, OH)),
                      (PW, _far_padding(W, PW, KW, 1, 1, OW))))


def direct_conv2d_numpy(x, w, b, PH, PW, OH, OW):
    """Reference forward: per kernel tap (kh, kw), the (K x C) weights times the tap's slice of x."""
    K, C, KH, KW = w.shape
    xp = _padded(x, KH, KW, PH, PW, OH, OW)
    y = np.zeros((x.shape[0], K, OH, OW), x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            y += np.einsum("kc,nchw->nkhw", w[:, :, kh, kw], xp[:, :, kh:kh + OH, kw:kw + OW])
    if b is not None:
        y += b.reshape(K, 1, 1)
    return y


def direct_conv2d_grad_input_numpy(gy, w, H, W, PH, PW):
    """Reference input gradient: every tap's contribution scatter-added into a padded buffer, then cropped."""
    N, K, OH, OW = gy.shape
    _, C, KH, KW = w.shape
    gxp = np.zeros((N, C, H + PH + _far_padding(H, PH, KH, 1, 1, OH), W + PW + _far_padding(W, PW, KW, 1, 1, OW)),
                   gy.dtype)
    for kh in range(KH):
        for kw in range(KW):
            gxp[:, :, kh:kh + OH, kw:kw + OW] += np.einsum("kc,nkhw->nchw", w[:, :, kh, kw], gy)
    return np.ascontiguousarray(gxp[:, :, PH:PH + H, PW:PW + W])


def direct_conv2d_grad_weight_numpy(x, gy, KH, KW, PH, PW):
    """Reference weight gradient: for each tap, gy times the slice of x it multiplied, summed over n, oh, ow."""
    OH, OW = gy.shape[2:]
    xp = _padded(x, KH, KW, PH, PW, OH, OW)
    gw = np.empty((gy.shape[1], x.shape[1], KH, KW), gy.dtype)
    for kh in range(KH):
        for kw in range(KW):
            gw[:, :, kh, kw] = np.einsum("nkhw,nchw->kc", gy, xp[:, :, kh:kh + OH, kw:kw + OW])
    return gw


# -- Numba CPU ----------------------------------------------------------------------------------------
# Each image is copied into a zeroed buffer xq (C, ...), the padded image with rows of Hp = OH + KH - 1
# and Wp = OW + KW - 1 pixels (padding cut where it is negative: the input gradient below uses that), and
# the output is computed in the same row pitch Wp: acc[k, oh*Wp + ow], the columns ow >= OW junk (computed,
# thrown away).  Tap (kh, kw) of output position p is then xq[c, p + kh*Wp + kw], so every tap is one flat
# unit-stride multiply-add over the L >= OH*Wp positions of the image (``_span``), which LLVM turns into SIMD code; two
# output maps and up to three taps are done per pass so that each accumulator is loaded and stored once for
# up to six multiply-adds.  The weight gradient runs the same loops as dot products (gy copied into the
# pitch-Wp layout, its junk columns zero).  The input gradient is the forward convolution of gy with each
# weight transposed (K <-> C) and flipped, padded by KH - 1 - PH, KW - 1 - PW.
#
# Non-finite values: the forward and the input gradient multiply exactly the products im2col + GEMM does,
# plus zero padding times weights in the input gradient (col2im drops those): with an inf or NaN *weight*
# the input gradient is NaN at every input pixel of the affected maps, where col2im's may keep some finite
# or infinite.  The weight gradient's junk columns multiply zero by input pixels no valid tap reads; an inf
# there would make a NaN im2col does not, so a weight gradient that comes out non-finite is recomputed
# without the junk columns (``_exact_grad_weight``): inf and NaN in x and gy then give what im2col gives.
# Only multiply-adds are contracted (FMA), and the dots reassociated; no other fast-math flag.
IMAGES_PER_JOB = 4   # the images of one parallel job: fixed, so the weight gradient's sums do not depend on threads


@njit(cache=True)
def _span(OH, Wp):
    """Output positions computed per image: OH*Wp rounded up to a multiple of 32, so that the vectorised
    loops (8 lanes, unrolled 4 times) have no scalar remainder, which cost more than the extra junk."""
    return (OH * Wp + 31) // 32 * 32


@njit(cache=True)
def _load(src, n, xq, PH, PW, Hp, Wp):
    """xq[c, (h + PH)*Wp + v + PW] = src[n, c, h, v] where that lies inside the Hp x Wp image; the rest zero."""
    H, W = src.shape[2], src.shape[3]
    xq[:] = 0
    for c in range(src.shape[1]):
        for h in range(max(0, -PH), min(H, Hp - PH)):
            row = (h + PH) * Wp + PW
            for v in range(max(0, -PW), min(W, Wp - PW)):
                xq[c, row + v] = src[n, c, h, v]


@njit(cache=True, fastmath={"contract"})
def _axpy2x3(y0, y1, x0, x1, x2, a00, a01, a02, a10, a11, a12):
    for i in range(y0.shape[0]):
        v0, v1, v2 = x0[i], x1[i], x2[i]
        y0[i] += a00 * v0 + a01 * v1 + a02 * v2
        y1[i] += a10 * v0 + a11 * v1 + a12 * v2


@njit(cache=True, fastmath={"contract"})
def _axpy2x2(y0, y1, x0, x1, a00, a01, a10, a11):
    for i in range(y0.shape[0]):
        v0, v1 = x0[i], x1[i]
        y0[i] += a00 * v0 + a01 * v1
        y1[i] += a10 * v0 + a11 * v1


@njit(cache=True, fastmath={"contract"})
def _axpy1(y, x, a):
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@njit(cache=True, fastmath={"contract"})
def _accumulate(acc, xq, w, L, Wp):
    """acc[k, :L] += sum_{c,kh,kw} w[k, c, kh, kw] * xq[c, kh*Wp + kw:][:L], two maps and up to five taps a
    pass (the loops of the five-tap pass written out here: a call per pass cost as much as the pass itself
    on C3's 14x14 images)."""
    K, C, KH, KW = w.shape
    for c in range(C):
        for kh in range(KH):
            r = kh * Wp
            k = 0
            while k + 2 <= K:
                a, b = w[k, c, kh], w[k + 1, c, kh]
                y0, y1 = acc[k, :L], acc[k + 1, :L]
                kw = 0
                if KW == 5:  # LeNet's kernels: the whole row of taps in one pass
                    a0, a1, a2, a3, a4, b0, b1, b2, b3, b4 = a[0], a[1], a[2], a[3], a[4], b[0], b[1], b[2], b[3], b[4]
                    x0, x1, x2 = xq[c, r:r + L], xq[c, r + 1:r + 1 + L], xq[c, r + 2:r + 2 + L]
                    x3, x4 = xq[c, r + 3:r + 3 + L], xq[c, r + 4:r + 4 + L]
                    for i in range(L):
                        v0, v1, v2, v3, v4 = x0[i], x1[i], x2[i], x3[i], x4[i]
                        y0[i] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3 + a4 * v4
                        y1[i] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3 + b4 * v4
                    kw = 5
                while kw + 3 <= KW:
                    _axpy2x3(y0, y1, xq[c, r + kw:r + kw + L], xq[c, r + kw + 1:r + kw + 1 + L],
                             xq[c, r + kw + 2:r + kw + 2 + L], a[kw], a[kw + 1], a[kw + 2], b[kw], b[kw + 1], b[kw + 2])
                    kw += 3
                if kw + 2 <= KW:
                    _axpy2x2(y0, y1, xq[c, r + kw:r + kw + L], xq[c, r + kw + 1:r + kw + 1 + L],
                             a[kw], a[kw + 1], b[kw], b[kw + 1])
                    kw += 2
                if kw < KW:
                    _axpy1(y0, xq[c, r + kw:r + kw + L], a[kw])
                    _axpy1(y1, xq[c, r + kw:r + kw + L], b[kw])
                k += 2
            if k < K:
                for kw in range(KW):
                    _axpy1(acc[k, :L], xq[c, r + kw:r + kw + L], w[k, c, kh, kw])


@njit(parallel=True, cache=True)
def _forward_cpu(x, w, b, has_bias, y, PH, PW):
    N, C = x.shape[0], x.shape[1]
    K, KH, KW = w.shape[0], w.shape[2], w.shape[3]
    OH, OW = y.shape[2], y.shape[3]
    Hp, Wp = OH + KH - 1, OW + KW - 1
    L = _span(OH, Wp)
    for job in prange((N + IMAGES_PER_JOB - 1) // IMAGES_PER_JOB):
        xq = np.empty((C, (KH - 1) * Wp + KW - 1 + L), x.dtype)   # the last junk positions read past the image
        acc = np.empty((K, L), x.dtype)
        for n in range(job * IMAGES_PER_JOB, min(N, (job + 1) * IMAGES_PER_JOB)):
            _load(x, n, xq, PH, PW, Hp, Wp)
            for k in range(K):
                acc[k, :] = b[k] if has_bias else 0
            _accumulate(acc, xq, w, L, Wp)
            for k in range(K):
                for oh in range(OH):
                    y[n, k, oh, :] = acc[k, oh * Wp:oh * Wp + OW]


@njit(cache=True, fastmath={"contract", "reassoc"})
def _dots2x3(g0, g1, x0, x1, x2, zero):
    """The six dots of g0, g1 with x0, x1, x2 (each vector loaded once for them)."""
    d00 = d01 = d02 = d10 = d11 = d12 = zero
    for i in range(g0.shape[0]):
        v0, v1, v2, p, q = x0[i], x1[i], x2[i], g0[i], g1[i]
        d00 += p * v0
        d01 += p * v1
        d02 += p * v2
        d10 += q * v0
        d11 += q * v1
        d12 += q * v2
    return d00, d01, d02, d10, d11, d12


@njit(cache=True, fastmath={"contract", "reassoc"})
def _dot(a, b, zero):
    total = zero
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@njit(cache=True, fastmath={"contract", "reassoc"})
def _correlate(gw, gq, xq, L, Wp, zero):
    """gw[k, c, kh, kw] += gq[k, :L] . xq[c, kh*Wp + kw:][:L], two maps and up to five taps a pass (the
    five-tap pass written out here, as in ``_accumulate``)."""
    K, C, KH, KW = gw.shape
    for c in range(C):
        for kh in range(KH):
            r = kh * Wp
            k = 0
            while k + 2 <= K:
                kw = 0
                if KW == 5:
                    g0, g1 = gq[k, :L], gq[k + 1, :L]
                    x0, x1, x2 = xq[c, r:r + L], xq[c, r + 1:r + 1 + L], xq[c, r + 2:r + 2 + L]
                    x3, x4 = xq[c, r + 3:r + 3 + L], xq[c, r + 4:r + 4 + L]
                    p0 = p1 = p2 = p3 = p4 = q0 = q1 = q2 = q3 = q4 = zero
                    for i in range(L):
                        v0, v1, v2, v3, v4, a, b = x0[i], x1[i], x2[i], x3[i], x4[i], g0[i], g1[i]
                        p0 += a * v0
                        p1 += a * v1
                        p2 += a * v2
                        p3 += a * v3
                        p4 += a * v4
                        q0 += b * v0
                        q1 += b * v1
                        q2 += b * v2
                        q3 += b * v3
                        q4 += b * v4
                    d, e = gw[k, c, kh], gw[k + 1, c, kh]
                    d[0] += p0
                    d[1] += p1
                    d[2] += p2
                    d[3] += p3
                    d[4] += p4
                    e[0] += q0
                    e[1] += q1
                    e[2] += q2
                    e[3] += q3
                    e[4] += q4
                    kw = 5
                while kw + 3 <= KW:
                    d = _dots2x3(gq[k, :L], gq[k + 1, :L], xq[c, r + kw:r + kw + L],
                                 xq[c, r + kw + 1:r + kw + 1 + L], xq[c, r + kw + 2:r + kw + 2 + L], zero)
                    gw[k, c, kh, kw] += d[0]
                    gw[k, c, kh, kw + 1] += d[1]
                    gw[k, c, kh, kw + 2] += d[2]
                    gw[k + 1, c, kh, kw] += d[3]
                    gw[k + 1, c, kh, kw + 1] += d[4]
                    gw[k + 1, c, kh, kw + 2] += d[5]
                    kw += 3
                for kw in range(kw, KW):
                    gw[k, c, kh, kw] += _dot(gq[k, :L], xq[c, r + kw:r + kw + L], zero)
                    gw[k + 1, c, kh, kw] += _dot(gq[k + 1, :L], xq[c, r + kw:r + kw + L], zero)
                k += 2
            if k < K:
                for kw in range(KW):
                    gw[k, c, kh, kw] += _dot(gq[k, :L], xq[c, r + kw:r + kw + L], zero)


@njit(parallel=True, cache=True)
def _grad_weight_cpu(x, gy, partial, PH, PW, zero):
    N, C = x.shape[0], x.shape[1]
    K, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3]
    KH, KW = partial.shape[3], partial.shape[4]
    Hp, Wp = OH + KH - 1, OW + KW - 1
    L = _span(OH, Wp)
    for job in prange(partial.shape[0]):  # each job sums its images into its own partial[job]
        xq = np.empty((C, (KH - 1) * Wp + KW - 1 + L), x.dtype)
        gq = np.zeros((K, L), gy.dtype)   # the junk columns stay zero
        for n in range(job * IMAGES_PER_JOB, min(N, (job + 1) * IMAGES_PER_JOB)):
            _load(x, n, xq, PH, PW, Hp, Wp)
            for k in range(K):
                for oh in range(OH):
                    gq[k, oh * Wp:oh * Wp + OW] = gy[n, k, oh, :]
            _correlate(partial[job], gq, xq, L, Wp, zero)


def direct_conv2d_cpu(x, w, b, PH, PW, OH, OW):
    """Numba forward (bias added first, in the accumulators), parallel over jobs of ``IMAGES_PER_JOB`` images."""
    y = np.empty((x.shape[0], w.shape[0], OH, OW), x.dtype)
    bias = np.zeros(w.shape[0], x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    _forward_cpu(np.ascontiguousarray(x), np.ascontiguousarray(w), bias, b is not None, y, PH, PW)
    return y


def direct_conv2d_grad_input_cpu(gy, w, H, W, PH, PW):
    """Numba input gradient: the forward kernel run on gy with the weights transposed and flipped."""
    KH, KW = w.shape[2:]
    wt = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    return direct_conv2d_cpu(gy, wt, None, KH - 1 - PH, KW - 1 - PW, H, W)


def direct_conv2d_grad_weight_cpu(x, gy, KH, KW, PH, PW):
    """Numba weight gradient: per job of ``IMAGES_PER_JOB`` images a float64 partial sum, summed in job order."""
    N, K = gy.shape[:2]
    partial = np.zeros(((N + IMAGES_PER_JOB - 1) // IMAGES_PER_JOB, K, x.shape[1], KH, KW))
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    _grad_weight_cpu(x, gy, partial, PH, PW, gy.dtype.type(0))
    gw = partial.sum(axis=0).astype(gy.dtype)
    if not np.isfinite(gw).all():
        _exact_grad_weight(x, gy, gw, PH, PW)
    return gw


def _exact_grad_weight(x, gy, gw, PH, PW):
    """Recompute the non-finite entries of gw from the valid taps only (no junk columns), as im2col does."""
    K, C, KH, KW = gw.shape
    OH, OW = gy.shape[2:]
    xp = _padded(x, KH, KW, PH, PW, OH, OW)
    for k, c, kh, kw in zip(*np.nonzero(~np.isfinite(gw))):
        gw[k, c, kh, kw] = np.sum(gy[:, k] * xp[:, c, kh:kh + OH, kw:kw + OW], dtype=np.float64)


# No ``parallel_min_size`` of their own: the thread policy's default (one thread below 2**24 elements) runs
# LeNet's layers on the calling thread.  Measured, LeNet-5's training step at batch 64 (ms, median of 10
# interleaved runs, load 1.9-2.3 from other processes): these kernels parallel from 2**16 elements 23.1, from
# 2**18 20.9, on one thread 16.3 (im2col + GEMM on split_work's threads: 19.0).
