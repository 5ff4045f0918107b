"""Grouped convolution on the CPU: the Numba kernels and the ``grouped_conv2d*_cpu`` entry points (the math and
the NumPy reference: ``grouped.py``).
"""
import numpy as np
from numba import njit, prange

from .im2col import _valid_range

# -- Numba CPU ----------------------------------------------------------------------------------------
# Each job owns one (n, g) pair: Cg input planes in, Kg output planes out.  It first copies its input
# planes into a zero-padded buffer split into SH*SW stride phases (the polyphase decomposition):
#
#     xq[j, ph, pw, r, q] = x[n, g*Cg + j, r*SH + ph - PH, q*SW + pw - PW]      (0 outside x)
#
# so that tap (kh, kw) of output (oh, ow) is xq[j, (kh*DH) % SH, (kw*DW) % SW, oh + (kh*DH) // SH,
# ow + (kw*DW) // SW]: a convolution of any stride becomes SH*SW stride-1 ones.  Each phase plane is Hq rows
# of Wq columns, and the output is laid out with the same row pitch Wq (OW real columns, the rest junk,
# computed and thrown away).  Then, for a chunk of R output rows, every tap is one flat, unit-stride axpy of
# R*Wq elements, ``acc[k, f] += w[k, j, kh, kw] * xq_flat[j, base + f]``, which LLVM turns into SIMD; the
# chunk's accumulators (Kg x R*Wq) stay in L1, the group's buffer in L2.  The input gradient runs the same
# loops with the axpy reversed (a scatter into a phase buffer for gx that the job owns, gathered back into
# gx at the end), the weight gradient with dots; both copy the chunk's output gradient into the junk-padded
# layout with the junk columns zero, so that they add nothing.
def cpu_geometry(H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, chunk):
    """``(Hq, Wq, R)``: rows and columns of a phase plane (the output's row pitch), output rows per chunk."""
    Wq = max(OW + (KW - 1) * DW // SW, -(-(PW + W) // SW))
    Hq = max(OH + (KH - 1) * DH // SH, -(-(PH + H) // SH)) + 1  # + 1: the junk columns read past the end
    return Hq, Wq, max(1, min(OH, chunk // Wq))


CHUNK = 512  # output elements per chunk and output channel (float32: 2 kB per accumulator row)


@njit(cache=True, inline="always")
def _axpy(y, x, a):
    """``y += a * x`` elementwise (two vectors of equal length)."""
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@njit(cache=True, inline="always")
def _dot(a, b, total):
    """``total + sum(a * b)``."""
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@njit(cache=True, inline="always")
def _axpy4(y0, y1, y2, y3, x, a0, a1, a2, a3):
    """``y_i += a_i * x`` for four rows at once: x is loaded once for four multiply-adds."""
    for i in range(x.shape[0]):
        v = x[i]
        y0[i] += a0 * v
        y1[i] += a1 * v
        y2[i] += a2 * v
        y3[i] += a3 * v


@njit(cache=True, inline="always")
def _gather4(y, x0, x1, x2, x3, a0, a1, a2, a3):
    """``y += a0*x0 + a1*x1 + a2*x2 + a3*x3``: y is loaded and stored once for four multiply-adds."""
    for i in range(y.shape[0]):
        y[i] += a0 * x0[i] + a1 * x1[i] + a2 * x2[i] + a3 * x3[i]


# The per-tap helpers: compiled functions of their own (not inlined), built once per dtype and shared by
# the kernels, which keeps the first compilation short.  ``fastmath`` lets LLVM fuse the multiply-adds and
# reassociate the dots so that they vectorise.
@njit(cache=True, fastmath=True)
def _rows_axpy(acc, taps, w, k0, j, kh, kw):
    """For each k: ``acc[k] += w[k0 + k, j, kh, kw] * taps``, four k at a time."""
    Kg, L = acc.shape[0], taps.shape[0]
    k = 0
    while k + 4 <= Kg:
        _axpy4(acc[k, :L], acc[k + 1, :L], acc[k + 2, :L], acc[k + 3, :L], taps, w[k0 + k, j, kh, kw],
               w[k0 + k + 1, j, kh, kw], w[k0 + k + 2, j, kh, kw], w[k0 + k + 3, j, kh, kw])
        k += 4
    for k in range(k, Kg):
        _axpy(acc[k, :L], taps, w[k0 + k, j, kh, kw])


@njit(cache=True, fastmath=True)
def _rows_scatter(taps, gyq, w, k0, j, kh, kw):
    """``taps += sum_k w[k0 + k, j, kh, kw] * gyq[k]``, four k at a time."""
    Kg, L = gyq.shape[0], taps.shape[0]
    k = 0
    while k + 4 <= Kg:
        _gather4(taps, gyq[k, :L], gyq[k + 1, :L], gyq[k + 2, :L], gyq[k + 3, :L], w[k0 + k, j, kh, kw],
                 w[k0 + k + 1, j, kh, kw], w[k0 + k + 2, j, kh, kw], w[k0 + k + 3, j, kh, kw])
        k += 4
    for k in range(k, Kg):
        _axpy(taps, gyq[k, :L], w[k0 + k, j, kh, kw])


@njit(cache=True, fastmath=True)
def _rows_dot(gyq, taps, gw, j, kh, kw, zero):
    """For each k: ``gw[k, j, kh, kw] += sum(gyq[k] * taps)``, four k at a time (taps loaded once): the
    sum in the input's precision (one chunk), the accumulation into gw in gw's (float64)."""
    Kg, L = gyq.shape[0], taps.shape[0]
    k = 0
    while k + 4 <= Kg:
        d0 = d1 = d2 = d3 = zero
        g0, g1, g2, g3 = gyq[k, :L], gyq[k + 1, :L], gyq[k + 2, :L], gyq[k + 3, :L]
        for i in range(L):
            v = taps[i]
            d0 += g0[i] * v
            d1 += g1[i] * v
            d2 += g2[i] * v
            d3 += g3[i] * v
        gw[k, j, kh, kw] += d0
        gw[k + 1, j, kh, kw] += d1
        gw[k + 2, j, kh, kw] += d2
        gw[k + 3, j, kh, kw] += d3
        k += 4
    for k in range(k, Kg):
        gw[k, j, kh, kw] += _dot(gyq[k, :L], taps, zero)


@njit(cache=True, fastmath=True)
def _rows_dot3(gyq, x0, x1, x2, gw, j, kh, kw, zero):
    """``_rows_dot`` for the three taps kw, kw+1, kw+2 at once, two k at a time: six sums, each row of
    gyq and of x loaded once for them."""
    Kg, L = gyq.shape[0], x0.shape[0]
    k = 0
    while k + 2 <= Kg:
        d00 = d01 = d02 = d10 = d11 = d12 = zero
        g0, g1 = gyq[k, :L], gyq[k + 1, :L]
        for i in range(L):
            v0, v1, v2, a, b = x0[i], x1[i], x2[i], g0[i], g1[i]
            d00 += a * v0
            d01 += a * v1
            d02 += a * v2
            d10 += b * v0
            d11 += b * v1
            d12 += b * v2
        gw[k, j, kh, kw] += d00
        gw[k, j, kh, kw + 1] += d01
        gw[k, j, kh, kw + 2] += d02
        gw[k + 1, j, kh, kw] += d10
        gw[k + 1, j, kh, kw + 1] += d11
        gw[k + 1, j, kh, kw + 2] += d12
        k += 2
    for k in range(k, Kg):
        gw[k, j, kh, kw] += _dot(gyq[k, :L], x0, zero)
        gw[k, j, kh, kw + 1] += _dot(gyq[k, :L], x1, zero)
        gw[k, j, kh, kw + 2] += _dot(gyq[k, :L], x2, zero)


@njit(cache=True)
def _phases(x, n, c0, xq, SH, SW, PH, PW, Hq, Wq, to_x):
    """Copy the planes x[n, c0:c0 + Cg] into the zeroed phase buffer xq (Cg, SH*SW*Hq*Wq), or, with
    ``to_x``, the buffer back into those planes (the input gradient)."""
    H, W = x.shape[2], x.shape[3]
    for j in range(xq.shape[0]):
        for ph in range(SH):
            for pw in range(SW):
                plane = (ph * SW + pw) * Hq * Wq
                q0, q1 = _valid_range(PW, pw, SW, W, Wq)  # columns q with 0 <= q*SW + pw - PW < W
                for r in range(Hq):
                    h = r * SH + ph - PH
                    if 0 <= h < H:
                        at, v0 = plane + r * Wq, pw - PW
                        for q in range(q0, q1):
                            if to_x:
                                x[n, c0 + j, h, q * SW + v0] = xq[j, at + q]
                            else:
                                xq[j, at + q] = x[n, c0 + j, h, q * SW + v0]


@njit(cache=True)
def _load_chunk(gy, n, k0, oh0, rows, Wq, buf):
    """buf[k, r*Wq + ow] = gy[n, k0 + k, oh0 + r, ow]; the junk columns ow >= OW are zero."""
    OW = gy.shape[3]
    for k in range(buf.shape[0]):
        for r in range(rows):
            for ow in range(OW):
                buf[k, r * Wq + ow] = gy[n, k0 + k, oh0 + r, ow]
            for f in range(r * Wq + OW, (r + 1) * Wq):
                buf[k, f] = 0


@njit(cache=True, inline="always")
def _tap_base(oh0, kh, kw, SH, SW, DH, DW, Hq, Wq):
    """Flat index in a phase buffer of tap (kh, kw) of output (oh0, 0)."""
    phase = ((kh * DH) % SH) * SW + (kw * DW) % SW
    return (phase * Hq + oh0 + (kh * DH) // SH) * Wq + (kw * DW) // SW


# One job each: plain compiled functions, so that the parallel kernels around them (whose compilation is
# slow) stay a single loop.
@njit(cache=True, inline="always")
def _axpy4x3(y0, y1, y2, y3, x0, x1, x2, a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32):
    """``y_k += a_k0*x0 + a_k1*x1 + a_k2*x2`` for four rows: each y loaded and stored once for three taps."""
    for i in range(y0.shape[0]):
        v0, v1, v2 = x0[i], x1[i], x2[i]
        y0[i] += a00 * v0 + a01 * v1 + a02 * v2
        y1[i] += a10 * v0 + a11 * v1 + a12 * v2
        y2[i] += a20 * v0 + a21 * v1 + a22 * v2
        y3[i] += a30 * v0 + a31 * v1 + a32 * v2


@njit(cache=True, fastmath=True)
def _rows_axpy3(acc, x0, x1, x2, w, k0, j, kh, kw):
    """For each k: ``acc[k] += sum over the three taps kw, kw+1, kw+2 of w[k0 + k, j, kh, .] * x.``"""
    Kg, L = acc.shape[0], x0.shape[0]
    k = 0
    while k + 4 <= Kg:
        a, b, c, d = w[k0 + k, j, kh], w[k0 + k + 1, j, kh], w[k0 + k + 2, j, kh], w[k0 + k + 3, j, kh]
        _axpy4x3(acc[k, :L], acc[k + 1, :L], acc[k + 2, :L], acc[k + 3, :L], x0, x1, x2,
                 a[kw], a[kw + 1], a[kw + 2], b[kw], b[kw + 1], b[kw + 2],
                 c[kw], c[kw + 1], c[kw + 2], d[kw], d[kw + 1], d[kw + 2])
        k += 4
    for k in range(k, Kg):
        a0, a1, a2 = w[k0 + k, j, kh, kw], w[k0 + k, j, kh, kw + 1], w[k0 + k, j, kh, kw + 2]
        y = acc[k, :L]
        for i in range(L):
            y[i] += a0 * x0[i] + a1 * x1[i] + a2 * x2[i]


@njit(cache=True)
def _forward_job(x, w, y, n, g, SH, SW, PH, PW, DH, DW, Hq, Wq, R):
    Cg, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    Kg, OH, OW = w.shape[0] * Cg // x.shape[1], y.shape[2], y.shape[3]
    xq = np.zeros((Cg, SH * SW * Hq * Wq), x.dtype)
    _phases(x, n, g * Cg, xq, SH, SW, PH, PW, Hq, Wq, False)
    acc = np.empty((Kg, R * Wq), x.dtype)
    for oh0 in range(0, OH, R):
        L = min(R, OH - oh0) * Wq
        acc[:, :L] = 0
        for j in range(Cg):
            for kh in range(KH):
                kw = 0
                while kw + 3 <= KW:  # three taps at a time: the accumulators are read and written once
                    b0 = _tap_base(oh0, kh, kw, SH, SW, DH, DW, Hq, Wq)
                    b1 = _tap_base(oh0, kh, kw + 1, SH, SW, DH, DW, Hq, Wq)
                    b2 = _tap_base(oh0, kh, kw + 2, SH, SW, DH, DW, Hq, Wq)
                    _rows_axpy3(acc, xq[j, b0:b0 + L], xq[j, b1:b1 + L], xq[j, b2:b2 + L], w, g * Kg, j, kh, kw)
                    kw += 3
                for kw in range(kw, KW):
                    base = _tap_base(oh0, kh, kw, SH, SW, DH, DW, Hq, Wq)
                    _rows_axpy(acc, xq[j, base:base + L], w, g * Kg, j, kh, kw)
        for k in range(Kg):
            for r in range(min(R, OH - oh0)):
                for ow in range(OW):
                    y[n, g * Kg + k, oh0 + r, ow] = acc[k, r * Wq + ow]


@njit(cache=True)
def _grad_input_job(gy, w, gx, n, g, SH, SW, PH, PW, DH, DW, Hq, Wq, R):
    Cg, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    Kg, OH = w.shape[0] * Cg // gx.shape[1], gy.shape[2]
    gxq = np.zeros((Cg, SH * SW * Hq * Wq), gy.dtype)
    gyq = np.empty((Kg, R * Wq), gy.dtype)
    for oh0 in range(0, OH, R):
        L = min(R, OH - oh0) * Wq
        _load_chunk(gy, n, g * Kg, oh0, min(R, OH - oh0), Wq, gyq)
        for j in range(Cg):
            for kh in range(KH):
                for kw in range(KW):
                    base = _tap_base(oh0, kh, kw, SH, SW, DH, DW, Hq, Wq)
                    _rows_scatter(gxq[j, base:base + L], gyq, w, g * Kg, j, kh, kw)
    _phases(gx, n, g * Cg, gxq, SH, SW, PH, PW, Hq, Wq, True)


@njit(cache=True)
def _grad_weight_job(x, gy, acc, n, g, SH, SW, PH, PW, DH, DW, Hq, Wq, R, zero):
    Kg, Cg, KH, KW = acc.shape
    OH = gy.shape[2]
    xq = np.zeros((Cg, SH * SW * Hq * Wq), x.dtype)
    _phases(x, n, g * Cg, xq, SH, SW, PH, PW, Hq, Wq, False)
    gyq = np.empty((Kg, R * Wq), gy.dtype)
    for oh0 in range(0, OH, R):
        L = min(R, OH - oh0) * Wq
        _load_chunk(gy, n, g * Kg, oh0, min(R, OH - oh0), Wq, gyq)
        for j in range(Cg):
            for kh in range(KH):
                kw = 0
                while kw + 3 <= KW:  # three taps at a time: each row of gyq is loaded once for them
                    b0 = _tap_base(oh0, kh, kw, SH, SW, DH, DW, Hq, Wq)
                    b1 = _tap_base(oh0, kh, kw + 1, SH, SW, DH, DW, Hq, Wq)
                    b2 = _tap_base(oh0, kh, kw + 2, SH, SW, DH, DW, Hq, Wq)
                    _rows_dot3(gyq, xq[j, b0:b0 + L], xq[j, b1:b1 + L], xq[j, b2:b2 + L], acc, j, kh, kw, zero)
                    kw += 3
                for kw in range(kw, KW):
                    base = _tap_base(oh0, kh, kw, SH, SW, DH, DW, Hq, Wq)
                    _rows_dot(gyq, xq[j, base:base + L], acc, j, kh, kw, zero)


@njit(parallel=True, cache=True)
def _forward_cpu(x, w, y, SH, SW, PH, PW, DH, DW, Hq, Wq, R):
    G = x.shape[1] // w.shape[1]
    for job in prange(x.shape[0] * G):  # one (n, g) per job: Cg input planes in, Kg output planes out
        _forward_job(x, w, y, job // G, job % G, SH, SW, PH, PW, DH, DW, Hq, Wq, R)


@njit(parallel=True, cache=True)
def _grad_input_cpu(gy, w, gx, SH, SW, PH, PW, DH, DW, Hq, Wq, R):
    G = gx.shape[1] // w.shape[1]
    for job in prange(gy.shape[0] * G):  # each job owns the Cg planes gx[n, g*Cg:(g+1)*Cg]: no races
        _grad_input_job(gy, w, gx, job // G, job % G, SH, SW, PH, PW, DH, DW, Hq, Wq, R)


@njit(parallel=True, cache=True)
def _grad_weight_cpu(x, gy, partial, SH, SW, PH, PW, DH, DW, Hq, Wq, R, zero):
    G = partial.shape[1]
    for job in prange(x.shape[0] * G):  # each job sums into its own partial[n, g]; the caller adds the n's up
        _grad_weight_job(x, gy, partial[job // G, job % G], job // G, job % G, SH, SW, PH, PW, DH, DW,
                         Hq, Wq, R, zero)


# Results are allocated by NumPy and filled by the kernels.
def grouped_conv2d_cpu(x, w, SH, SW, PH, PW, DH, DW, OH, OW):
    """Numba forward, parallel over (n, group)."""
    K, _, KH, KW = w.shape
    y = np.empty((x.shape[0], K, OH, OW), x.dtype)
    geometry = cpu_geometry(x.shape[2], x.shape[3], KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, CHUNK)
    _forward_cpu(np.ascontiguousarray(x), np.ascontiguousarray(w), y, SH, SW, PH, PW, DH, DW, *geometry)
    return y


def grouped_conv2d_grad_input_cpu(gy, w, C, H, W, SH, SW, PH, PW, DH, DW):
    """Numba input gradient, parallel over (n, group): each job scatters into its own input planes."""
    K, Cg, KH, KW = w.shape
    if SH == SW == 1 and PH <= DH * (KH - 1) and PW <= DW * (KW - 1):
        # at stride 1 the input gradient is a forward convolution of gy, with each group's weights
        # transposed (Kg inputs, Cg outputs) and flipped, and padding (KH-1)*DH - PH: the faster kernel
        G = C // Cg
        wt = w.reshape(G, K // G, Cg, KH, KW).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1].reshape(C, K // G, KH, KW)
        return grouped_conv2d_cpu(gy, np.ascontiguousarray(wt), 1, 1, DH * (KH - 1) - PH, DW * (KW - 1) - PW,
                                  DH, DW, H, W)
    gx = np.empty((gy.shape[0], C, H, W), gy.dtype)
    geometry = cpu_geometry(H, W, KH, KW, SH, SW, PH, PW, DH, DW, gy.shape[2], gy.shape[3], CHUNK)
    _grad_input_cpu(np.ascontiguousarray(gy), np.ascontiguousarray(w), gx, SH, SW, PH, PW, DH, DW, *geometry)
    return gx


def grouped_conv2d_grad_weight_cpu(x, gy, G, KH, KW, SH, SW, PH, PW, DH, DW):
    """Numba weight gradient, parallel over (n, group) into float64 partial sums, then summed over n."""
    N, K, OH, OW = gy.shape
    Cg = x.shape[1] // G
    partial = np.zeros((N, G, K // G, Cg, KH, KW))
    geometry = cpu_geometry(x.shape[2], x.shape[3], KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, CHUNK)
    _grad_weight_cpu(np.ascontiguousarray(x), np.ascontiguousarray(gy), partial, SH, SW, PH, PW, DH, DW,
                     *geometry, gy.dtype.type(0))
    return partial.sum(axis=0).reshape(K, Cg, KH, KW).astype(gy.dtype)


# tinyconv's thread policy (tinyconv/threads.py) runs Numba kernels on one thread below 2**24 elements; these do
# Cg*KH*KW multiply-adds per element (36 in ResNeXt's 3x3 blocks), so two threads pay from about this size on:
# ResNeXt's grouped 3x3 (N=8, 128 channels, 56x56) ran at 31-37 GFLOP/s on two threads, 20-22 on one.
for _kernel in (grouped_conv2d_cpu, grouped_conv2d_grad_input_cpu, grouped_conv2d_grad_weight_cpu):
    _kernel.parallel_min_size = 1 << 18
