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
"""
import functools

import numpy as np
from numba import cuda, from_dtype, get_num_threads, njit, prange, set_parallel_chunksize

from .im2col import _blocks, _far_padding, _THREADS


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


# -- Numba CPU ----------------------------------------------------------------------------------------
# Every kernel works on one channel c and a block of nb images at a time, copied into a zero-padded buffer
# split by stride phase:
#
#     q[ph, pw, b, i, j] = x[n0 + b, c, i*SH + ph - PH, j*SW + pw - PW]   (zero outside x), (SH, SW, nb, Hq, Wq)
#
# so that tap (kh, kw) of output (oh, ow) reads q[(kh*DH) % SH, (kw*DW) % SW, b, oh + kh*DH // SH, ow + kw*DW // SW]:
# whatever the stride, one tap over one output row is a contiguous run of a phase row.  Laying the outputs out
# like one phase (nb, Hq, Wq) as well (scratch columns past OW, scratch rows past OH), a tap over the whole
# block is one flat run,
#
#     out[i] += w[k, kh, kw] * q_flat[off(kh, kw) + i]        for i in [0, (nb-1)*Hq*Wq + OH*Wq),
#
# a long unit-stride loop that LLVM turns into SIMD, with no bounds tests: padding is in q.  Small planes are
# batched (nb > 1) so that per-plane overheads do not dominate deep layers of 4x4 or 2x2 maps.  The scratch
# positions read and write neighbouring elements of q; the forward drops them, the input gradient adds zeros
# there, the weight gradient multiplies zeros (``_finite`` guards the one case where that is not exact).
# Forward and input gradient add the taps in the reference's order, term by term (no fastmath: bitwise the
# NumPy reference's sums, which batch norm over tiny batches can amplify); the weight gradient's long dot
# products are reassociated so that they vectorise too.
_REASSOC = {"reassoc", "nsz", "contract"}  # no "nnan"/"ninf": the weight gradient tests its sums for inf/NaN
_DOT_BLOCK = 1024  # float32 partial dot products of at most this length, summed in float64
_BLOCK_ELEMENTS = 4096  # images per job: as many as fit phase buffers of about this size (L1-resident)


@njit(cache=True)
def _phase_shape(N, OH, OW, KH, KW, SH, SW, DH, DW):
    """(Hq, Wq, nb, length of q): the phase planes hold the (OH-1)*SH + (KH-1)*DH + 1 padded rows the taps
    read (likewise columns), nb images per job, plus a tail for the flat runs' scratch reads past the end."""
    Hq = ((OH - 1) * SH + (KH - 1) * DH) // SH + 1
    Wq = ((OW - 1) * SW + (KW - 1) * DW) // SW + 1
    nb = max(1, min(N, _BLOCK_ELEMENTS // (SH * SW * Hq * Wq)))
    return Hq, Wq, nb, SH * SW * nb * Hq * Wq + (KW - 1) * DW // SW


@njit(cache=True, inline="always")
def _tap_offset(kh, kw, SH, SW, DH, DW, Hq, Wq, nb):
    """Where the flat run of tap (kh, kw) starts in q."""
    plane = ((kh * DH) % SH) * SW + (kw * DW) % SW
    return plane * nb * Hq * Wq + (kh * DH // SH) * Wq + kw * DW // SW


@njit(cache=True)
def _tap_offsets(KH, KW, SH, SW, DH, DW, Hq, Wq, nb):
    offs = np.empty(KH * KW, np.int64)
    for t in range(KH * KW):
        offs[t] = _tap_offset(t // KW, t % KW, SH, SW, DH, DW, Hq, Wq, nb)
    return offs


@njit(cache=True, inline="always")
def _copy(dst, src):
    """``dst[:] = src`` as a plain loop (Numba's slice assignment checks overlap and broadcasts: slow on rows)."""
    for i in range(dst.shape[0]):
        dst[i] = src[i]


@njit(cache=True, inline="always")
def _gather(dst, src, S):
    """``dst[t] = src[S*t]``."""
    for t in range(dst.shape[0]):
        dst[t] = src[S * t]


@njit(cache=True, inline="always")
def _spread(dst, src, S):
    """``dst[S*t] = src[t]``, the inverse of ``_gather``."""
    for t in range(src.shape[0]):
        dst[S * t] = src[t]


@njit(cache=True, inline="always")
def _split2(row, even, odd):
    """``even[t] = row[2t]``, ``odd[t] = row[2t + 1]`` as far as each goes: stride 2's two phases in one loop,
    which LLVM vectorises with shuffles."""
    n = min(row.shape[0] // 2, even.shape[0], odd.shape[0])
    for t in range(n):
        even[t] = row[2 * t]
        odd[t] = row[2 * t + 1]
    for w in range(2 * n, row.shape[0]):
        if w % 2 == 0 and w // 2 < even.shape[0]:
            even[w // 2] = row[w]
        elif w % 2 == 1 and w // 2 < odd.shape[0]:
            odd[w // 2] = row[w]


@njit(cache=True, inline="always")
def _merge2(row, even, odd):
    """The inverse of ``_split2``: ``row[2t] = even[t]``, ``row[2t + 1] = odd[t]``, zero past their ends."""
    n = min(row.shape[0] // 2, even.shape[0], odd.shape[0])
    for t in range(n):
        row[2 * t] = even[t]
        row[2 * t + 1] = odd[t]
    for w in range(2 * n, row.shape[0]):
        src = even if w % 2 == 0 else odd
        row[w] = src[w // 2] if w // 2 < src.shape[0] else 0


@njit(cache=True, inline="always")
def _zero(dst):
    for i in range(dst.shape[0]):
        dst[i] = 0


@njit(cache=True)
def _to_phases(src, q, b, nb, SH, SW, PH, PW, Hq, Wq):
    """Copy the (H, W) plane ``src`` into image b of the phase planes q (flat), whose padding is already zero."""
    H, W = src.shape
    if SW == 2:  # the two column phases of each row in one pass
        for h in range(H):
            i, ph = (h + PH) // SH, (h + PH) % SH
            if i < Hq:
                r0 = ((ph * 2 * nb + b) * Hq + i) * Wq  # the row of phase (ph, 0); phase (ph, 1) is nb*Hq rows on
                r1 = r0 + nb * Hq * Wq
                even, odd = (r0, r1) if PW % 2 == 0 else (r1, r0)  # where x's even and odd columns go
                _split2(src[h], q[even + PW // 2:even + Wq], q[odd + (PW + 1) // 2:odd + Wq])
        return
    for ph in range(SH):
        for pw in range(SW):
            j0 = min(Wq, -((pw - PW) // SW))                  # first j with j*SW + pw - PW >= 0
            j1 = max(j0, min(Wq, (W - 1 + PW - pw) // SW + 1))  # past the last j inside the row
            for i in range(max(0, -((ph - PH) // SH)), min(Hq, (H - 1 + PH - ph) // SH + 1)):
                start = (((ph * SW + pw) * nb + b) * Hq + i) * Wq
                h = i * SH + ph - PH
                if SW == 1:  # a contiguous view, which LLVM copies with SIMD
                    _copy(q[start + j0:start + j1], src[h, j0 - PW:j1 - PW])
                elif j1 > j0:
                    _gather(q[start + j0:start + j1], src[h, j0 * SW + pw - PW:], SW)


@njit(cache=True)
def _from_phases(q, dst, b, nb, SH, SW, PH, PW, Hq, Wq):
    """The inverse of ``_to_phases``: dst[h, w] = the padded position (h + PH, w + PW) of image b of q (zero
    past q)."""
    H, W = dst.shape
    for h in range(H):
        i, ph = (h + PH) // SH, (h + PH) % SH
        if SW == 2:
            if i < Hq:
                r0 = ((ph * 2 * nb + b) * Hq + i) * Wq
                r1 = r0 + nb * Hq * Wq
                even, odd = (r0, r1) if PW % 2 == 0 else (r1, r0)
                _merge2(dst[h], q[even + PW // 2:even + Wq], q[odd + (PW + 1) // 2:odd + Wq])
            else:
                _zero(dst[h])
            continue
        for w0 in range(min(SW, W)):  # the columns w0, w0 + SW, ... share phase (w0 + PW) % SW
            pw, j = (w0 + PW) % SW, (w0 + PW) // SW
            start = (((ph * SW + pw) * nb + b) * Hq + i) * Wq + j
            n = (W - w0 + SW - 1) // SW
            inside = max(0, min(n, Wq - j)) if i < Hq else 0
            if SW == 1:  # a contiguous view, which LLVM copies with SIMD
                _copy(dst[h, :inside], q[start:start + inside])
                _zero(dst[h, inside:])
            else:
                _spread(dst[h, w0:], q[start:start + inside], SW)
                for w in range(w0 + inside * SW, W, SW):
                    dst[h, w] = 0


@njit(cache=True)
def _to_rows(src, g, Wq):
    """Copy the (OH, OW) plane ``src`` into g (flat) with rows Wq apart (the scratch columns are left alone)."""
    for oh in range(src.shape[0]):
        _copy(g[oh * Wq:oh * Wq + src.shape[1]], src[oh])


@njit(cache=True, inline="always")
def _axpy(y, x, a):
    """``y += a * x`` elementwise."""
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@njit(cache=True, inline="always")
def _axpy3(y, x0, x1, x2, a0, a1, a2):
    """``y = ((y + a0*x0) + a1*x1) + a2*x2`` elementwise: three taps, one pass, the order of three ``_axpy``."""
    for i in range(y.shape[0]):
        y[i] = ((y[i] + a0 * x0[i]) + a1 * x1[i]) + a2 * x2[i]


@njit(cache=True, inline="always")
def _axpy9(y, x0, x1, x2, x3, x4, x5, x6, x7, x8, a0, a1, a2, a3, a4, a5, a6, a7, a8):
    """Nine taps in one pass, in the order of nine ``_axpy`` (a 3 x 3 kernel's whole window)."""
    for i in range(y.shape[0]):
        y[i] = ((((((((y[i] + a0 * x0[i]) + a1 * x1[i]) + a2 * x2[i]) + a3 * x3[i]) + a4 * x4[i]) + a5 * x5[i])
                 + a6 * x6[i]) + a7 * x7[i]) + a8 * x8[i]


@njit(cache=True, inline="always")
def _set9(y, x0, x1, x2, x3, x4, x5, x6, x7, x8, a0, a1, a2, a3, a4, a5, a6, a7, a8, zero):
    """``_axpy9`` onto zeros: the same sums without a pass zeroing ``y`` first."""
    for i in range(y.shape[0]):
        y[i] = ((((((((zero + a0 * x0[i]) + a1 * x1[i]) + a2 * x2[i]) + a3 * x3[i]) + a4 * x4[i]) + a5 * x5[i])
                 + a6 * x6[i]) + a7 * x7[i]) + a8 * x8[i]


@njit(cache=True)
def _correlate(dst, src, offs, ws, count, zero):
    """``dst[i] = sum over t < count of ws[t] * src[offs[t] + i]``, from ``zero`` in the order of t, term by
    term (the reference's sums exactly), nine or three taps per pass over dst."""
    L = dst.shape[0]
    t = 0
    if count >= 9:  # the first nine taps start from zero
        o = offs[:9]
        _set9(dst, src[o[0]:o[0] + L], src[o[1]:o[1] + L], src[o[2]:o[2] + L], src[o[3]:o[3] + L],
              src[o[4]:o[4] + L], src[o[5]:o[5] + L], src[o[6]:o[6] + L], src[o[7]:o[7] + L],
              src[o[8]:o[8] + L], ws[0], ws[1], ws[2], ws[3], ws[4], ws[5], ws[6], ws[7], ws[8], zero)
        t = 9
    else:
        _zero(dst)
    while t < count:
        o = offs[t:t + 9]
        if count - t >= 9:
            _axpy9(dst, src[o[0]:o[0] + L], src[o[1]:o[1] + L], src[o[2]:o[2] + L], src[o[3]:o[3] + L],
                   src[o[4]:o[4] + L], src[o[5]:o[5] + L], src[o[6]:o[6] + L], src[o[7]:o[7] + L],
                   src[o[8]:o[8] + L], ws[t], ws[t + 1], ws[t + 2], ws[t + 3], ws[t + 4], ws[t + 5], ws[t + 6],
                   ws[t + 7], ws[t + 8])
            t += 9
        elif count - t >= 3:
            _axpy3(dst, src[o[0]:o[0] + L], src[o[1]:o[1] + L], src[o[2]:o[2] + L], ws[t], ws[t + 1], ws[t + 2])
            t += 3
        else:
            _axpy(dst, src[o[0]:o[0] + L], ws[t])
            t += 1


@njit(cache=True, inline="always")
def _scatter(acc, o, src, a, nn, P, OH, OW, Wq, exact):
    """``acc[o + i] += a * src[i]`` over the flat run (``exact``) or over the real positions only."""
    if exact:
        _axpy(acc[o:o + src.shape[0]], src, a)
    else:
        for b in range(nn):
            for oh in range(OH):
                r = b * P + oh * Wq
                _axpy(acc[o + r:o + r + OW], src[r:r + OW], a)


@njit(cache=True, fastmath=_REASSOC)
def _dot(a, b):
    """``sum(a * b)``: vectorised partial sums in the arrays' dtype over blocks, added up in float64."""
    total = 0.0
    for s in range(0, a.shape[0], _DOT_BLOCK):
        e = min(a.shape[0], s + _DOT_BLOCK)
        x, y = a[s:e], b[s:e]
        part = x[0] * y[0]
        for i in range(1, x.shape[0]):
            part += x[i] * y[i]
        total += part
    return total


@njit(cache=True, fastmath=_REASSOC)
def _dot3(a, b0, b1, b2):
    """``(sum(a * b0), sum(a * b1), sum(a * b2))`` in one pass over ``a``, blocked like ``_dot``."""
    t0 = t1 = t2 = 0.0
    for s in range(0, a.shape[0], _DOT_BLOCK):
        e = min(a.shape[0], s + _DOT_BLOCK)
        x, y0, y1, y2 = a[s:e], b0[s:e], b1[s:e], b2[s:e]
        p0, p1, p2 = x[0] * y0[0], x[0] * y1[0], x[0] * y2[0]
        for i in range(1, x.shape[0]):
            p0 += x[i] * y0[i]
            p1 += x[i] * y1[i]
            p2 += x[i] * y2[i]
        t0 += p0
        t1 += p1
        t2 += p2
    return t0, t1, t2


@njit(cache=True, fastmath=_REASSOC)
def _dot9(a, b0, b1, b2, b3, b4, b5, b6, b7, b8, out):
    """``out[t] = sum(a * bt)`` for nine runs (a 3 x 3 window) in one pass over ``a``, blocked like ``_dot``."""
    out[:9] = 0.0
    for s in range(0, a.shape[0], _DOT_BLOCK):
        e = min(a.shape[0], s + _DOT_BLOCK)
        x = a[s:e]
        y0, y1, y2, y3, y4 = b0[s:e], b1[s:e], b2[s:e], b3[s:e], b4[s:e]
        y5, y6, y7, y8 = b5[s:e], b6[s:e], b7[s:e], b8[s:e]
        p0, p1, p2, p3, p4, p5, p6, p7, p8 = (x[0] * y0[0], x[0] * y1[0], x[0] * y2[0], x[0] * y3[0], x[0] * y4[0],
                                              x[0] * y5[0], x[0] * y6[0], x[0] * y7[0], x[0] * y8[0])
        for i in range(1, x.shape[0]):
            v = x[i]
            p0 += v * y0[i]
            p1 += v * y1[i]
            p2 += v * y2[i]
            p3 += v * y3[i]
            p4 += v * y4[i]
            p5 += v * y5[i]
            p6 += v * y6[i]
            p7 += v * y7[i]
            p8 += v * y8[i]
        out[0] += p0
        out[1] += p1
        out[2] += p2
        out[3] += p3
        out[4] += p4
        out[5] += p5
        out[6] += p6
        out[7] += p7
        out[8] += p8


@njit(cache=True)
def _finite(v):
    return np.isfinite(v)


@njit(parallel=True, cache=True)
def _forward_cpu(x, w, y, SH, SW, PH, PW, DH, DW, chunks):
    N, C, H, W = x.shape
    K, KH, KW = w.shape
    OH, OW = y.shape[2], y.shape[3]
    M = K // C
    Hq, Wq, nb, size = _phase_shape(N, OH, OW, KH, KW, SH, SW, DH, DW)
    P = Hq * Wq
    offs = _tap_offsets(KH, KW, SH, SW, DH, DW, Hq, Wq, nb)
    blocks = (N + nb - 1) // nb
    jobs = C * blocks  # job = (channel c, block of nb images)
    chunks = min(jobs, chunks)
    for chunk in prange(chunks):  # chunks of jobs, handed to threads as they come free; own buffers each
        q = np.zeros(size, x.dtype)  # the padding stays zero: each job overwrites the same interior
        acc = np.empty(nb * P, y.dtype)
        zero = np.zeros(1, y.dtype)[0]
        for job in range(chunk * jobs // chunks, (chunk + 1) * jobs // chunks):
            c, n0 = job // blocks, job % blocks * nb
            nn = min(nb, N - n0)
            for b in range(nn):
                _to_phases(x[n0 + b, c], q, b, nb, SH, SW, PH, PW, Hq, Wq)
            for k in range(c * M, c * M + M):
                _correlate(acc[:(nn - 1) * P + OH * Wq], q, offs, w[k].reshape(KH * KW), KH * KW, zero)
                for b in range(nn):
                    for oh in range(OH):
                        _copy(y[n0 + b, k, oh], acc[b * P + oh * Wq:b * P + oh * Wq + OW])


@njit(cache=True)
def _grad_input_job(g, w, c, M, n0, nn, acc, t, offs, ws, one, zero, exact, gx, SH, SW, PH, PW, DH, DW, Hq, Wq,
                    nb, lead, OH, OW):
    """gx[n0:n0 + nn, c] from g, the (M, lead + nb*Hq*Wq) gy planes of channel c laid out like q after ``lead``
    zeros; ``acc`` (phase planes of the padded gx), ``t``, ``offs``, ``ws``: the caller's buffers."""
    KH, KW = w.shape[1], w.shape[2]
    P = Hq * Wq
    L = (nn - 1) * P + OH * Wq
    if M == 1 and exact:
        # gather form: each phase plane of gx correlates g with its own taps (flipped offsets); the zeros
        # around g add w * 0 terms, exact for finite weights
        for p in range(SH * SW):
            count = 0
            for kh in range(KH):
                for kw in range(KW):
                    if ((kh * DH) % SH) * SW + (kw * DW) % SW == p:
                        offs[count] = lead - (kh * DH // SH) * Wq - kw * DW // SW
                        ws[count] = w[c, kh, kw]
                        count += 1
            _correlate(acc[p * nb * P:p * nb * P + nn * P], g[0], offs, ws, count, zero)
    else:  # scatter form, over the real positions only when a weight is inf/NaN
        _zero(acc)
        for kh in range(KH):
            for kw in range(KW):  # each tap's run, in the reference's tap order
                o = _tap_offset(kh, kw, SH, SW, DH, DW, Hq, Wq, nb)
                if M == 1:
                    _scatter(acc, o, g[0, lead:lead + L], w[c, kh, kw], nn, P, OH, OW, Wq, exact)
                else:  # the reference's sum over m first: (w0*g0 + w1*g1) + ...
                    for i in range(L):
                        t[i] = w[c * M, kh, kw] * g[0, lead + i]
                    for m in range(1, M):
                        _axpy(t[:L], g[m, lead:lead + L], w[c * M + m, kh, kw])
                    _scatter(acc, o, t[:L], one, nn, P, OH, OW, Wq, exact)
    for b in range(nn):
        _from_phases(acc, gx[n0 + b, c], b, nb, SH, SW, PH, PW, Hq, Wq)


@njit(cache=True)
def _grad_weight_job(g, q, offs, sums, part, blk, k, nn, P, OH, OW, Wq, KH, KW):
    """part[blk, k] = the KH x KW dot products of g (the gy planes of filter k, laid out like q) with the
    taps' runs of q."""
    L = (nn - 1) * P + OH * Wq
    t = 0
    while t < KH * KW:  # nine or three taps per pass over g
        o = offs[t:t + 9]
        if t + 9 <= KH * KW:
            _dot9(g[:L], q[o[0]:o[0] + L], q[o[1]:o[1] + L], q[o[2]:o[2] + L], q[o[3]:o[3] + L],
                  q[o[4]:o[4] + L], q[o[5]:o[5] + L], q[o[6]:o[6] + L], q[o[7]:o[7] + L], q[o[8]:o[8] + L], sums)
            n_taps = 9
        elif t + 3 <= KH * KW:
            sums[0], sums[1], sums[2] = _dot3(g[:L], q[o[0]:o[0] + L], q[o[1]:o[1] + L], q[o[2]:o[2] + L])
            n_taps = 3
        else:
            sums[0] = _dot(g[:L], q[o[0]:o[0] + L])
            n_taps = 1
        for j in range(n_taps):
            if not _finite(sums[j]):  # perhaps scratch zeros times an inf/NaN of x: real positions only
                sums[j] = 0.0
                for b in range(nn):
                    for oh in range(OH):
                        r = b * P + oh * Wq
                        sums[j] += _dot(g[r:r + OW], q[o[j] + r:o[j] + r + OW])
            part[blk, k, (t + j) // KW, (t + j) % KW] = sums[j]
        t += n_taps


@njit(cache=True)
def _all_finite(w, C):
    """Whether the weights of each channel c (its M filters) are all finite."""
    M = w.shape[0] // C
    finite = np.empty(C, np.bool_)
    for c in range(C):
        finite[c] = _finite(w[c * M:c * M + M]).all()
    return finite


@njit(parallel=True, cache=True)
def _grad_input_cpu(gy, w, gx, SH, SW, PH, PW, DH, DW, chunks):
    N, K, OH, OW = gy.shape
    _, KH, KW = w.shape
    C = gx.shape[1]
    M = K // C
    Hq, Wq, nb, size = _phase_shape(N, OH, OW, KH, KW, SH, SW, DH, DW)
    lead = ((KH - 1) * DH // SH) * Wq + (KW - 1) * DW // SW  # the largest tap offset inside a phase plane
    finite = _all_finite(w, C)
    blocks = (N + nb - 1) // nb
    jobs = C * blocks
    chunks = min(jobs, chunks)
    for chunk in prange(chunks):
        g = np.zeros((M, lead + nb * Hq * Wq), gy.dtype)  # gy planes of channel c laid out like q, after lead zeros
        t = np.empty(nb * Hq * Wq, gy.dtype)    # sum over m of w * g, for M > 1
        acc = np.empty(size, gx.dtype)    # the phase planes of the padded gx
        offs = np.empty(KH * KW, np.int64)
        ws = np.empty(KH * KW, w.dtype)
        one, zero = np.ones(1, gy.dtype)[0], np.zeros(1, gy.dtype)[0]
        for job in range(chunk * jobs // chunks, (chunk + 1) * jobs // chunks):
            c, n0 = job // blocks, job % blocks * nb
            nn = min(nb, N - n0)
            for m in range(M):
                for b in range(nn):
                    _to_rows(gy[n0 + b, c * M + m], g[m, lead + b * Hq * Wq:], Wq)
            _grad_input_job(g, w, c, M, n0, nn, acc, t, offs, ws, one, zero, finite[c], gx, SH, SW, PH, PW, DH,
                            DW, Hq, Wq, nb, lead, OH, OW)


@njit(parallel=True, cache=True)
def _grad_weight_cpu(x, gy, gw, SH, SW, PH, PW, DH, DW, chunks):
    N, C, H, W = x.shape
    K, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3]
    KH, KW = gw.shape[1], gw.shape[2]
    M = K // C
    Hq, Wq, nb, size = _phase_shape(N, OH, OW, KH, KW, SH, SW, DH, DW)
    P = Hq * Wq
    offs = _tap_offsets(KH, KW, SH, SW, DH, DW, Hq, Wq, nb)
    blocks = (N + nb - 1) // nb
    jobs = C * blocks
    part = np.empty((blocks, K, KH, KW))  # float64 partial sums of each block: the reduction over blocks follows
    chunks = min(jobs, chunks)
    for chunk in prange(chunks):
        q = np.zeros(size, x.dtype)
        g = np.zeros(nb * P, gy.dtype)
        sums = np.empty(9)
        for job in range(chunk * jobs // chunks, (chunk + 1) * jobs // chunks):
            c, blk = job // blocks, job % blocks
            nn = min(nb, N - blk * nb)
            for b in range(nn):
                _to_phases(x[blk * nb + b, c], q, b, nb, SH, SW, PH, PW, Hq, Wq)
            for k in range(c * M, c * M + M):
                for b in range(nn):
                    _to_rows(gy[blk * nb + b, k], g[b * P:], Wq)
                _grad_weight_job(g, q, offs, sums, part, blk, k, nn, P, OH, OW, Wq, KH, KW)
    for k in prange(K):
        _sum_blocks(part[:, k], gw[k])


@njit(parallel=True, cache=True)
def _backward_cpu(x, gy, w, gx, gw, SH, SW, PH, PW, DH, DW, chunks):
    """Both gradients in one pass over gy: the work of ``_grad_input_cpu`` and ``_grad_weight_cpu``."""
    N, C, H, W = x.shape
    K, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3]
    KH, KW = w.shape[1], w.shape[2]
    M = K // C
    Hq, Wq, nb, size = _phase_shape(N, OH, OW, KH, KW, SH, SW, DH, DW)
    P = Hq * Wq
    lead = ((KH - 1) * DH // SH) * Wq + (KW - 1) * DW // SW
    finite = _all_finite(w, C)
    offs_w = _tap_offsets(KH, KW, SH, SW, DH, DW, Hq, Wq, nb)
    blocks = (N + nb - 1) // nb
    jobs = C * blocks
    part = np.empty((blocks, K, KH, KW))
    chunks = min(jobs, chunks)
    for chunk in prange(chunks):
        g = np.zeros((M, lead + nb * P), gy.dtype)
        t = np.empty(nb * P, gy.dtype)
        acc = np.empty(size, gx.dtype)
        q = np.zeros(size, x.dtype)
        offs = np.empty(KH * KW, np.int64)
        ws = np.empty(KH * KW, w.dtype)
        sums = np.empty(9)
        one, zero = np.ones(1, gy.dtype)[0], np.zeros(1, gy.dtype)[0]
        for job in range(chunk * jobs // chunks, (chunk + 1) * jobs // chunks):
            c, blk = job // blocks, job % blocks
            n0 = blk * nb
            nn = min(nb, N - n0)
            for m in range(M):
                for b in range(nn):
                    _to_rows(gy[n0 + b, c * M + m], g[m, lead + b * P:], Wq)
            _grad_input_job(g, w, c, M, n0, nn, acc, t, offs, ws, one, zero, finite[c], gx, SH, SW, PH, PW, DH,
                            DW, Hq, Wq, nb, lead, OH, OW)
            for b in range(nn):
                _to_phases(x[n0 + b, c], q, b, nb, SH, SW, PH, PW, Hq, Wq)
            for m in range(M):
                _grad_weight_job(g[m, lead:], q, offs_w, sums, part, blk, c * M + m, nn, P, OH, OW, Wq, KH, KW)
    for k in prange(K):
        _sum_blocks(part[:, k], gw[k])


@njit(cache=True)
def _sum_blocks(part, gw):
    """gw[kh, kw] = the float64 sum over blocks of part[blk, kh, kw], in block order (the same on any thread count)."""
    for kh in range(gw.shape[0]):
        for kw in range(gw.shape[1]):
            s = 0.0
            for blk in range(part.shape[0]):
                s += part[blk, kh, kw]
            gw[kh, kw] = s


# Results are allocated by NumPy (huge pages for large arrays; see im2col.py) and filled by the kernels.
_CHUNKS_PER_THREAD = 4  # a thread that falls behind (a busy machine) leaves its later chunks to the others


def _run(kernel, *args):
    """``kernel(*args, chunks)`` with its chunks scheduled dynamically, one at a time."""
    previous = set_parallel_chunksize(1)
    try:
        kernel(*args, _CHUNKS_PER_THREAD * get_num_threads())
    finally:
        set_parallel_chunksize(previous)


def depthwise_conv2d_cpu(x, w, SH, SW, PH, PW, DH, DW, OH, OW):
    """Numba forward, parallel over channels and blocks of images."""
    y = np.empty((x.shape[0], w.shape[0], OH, OW), x.dtype)
    _run(_forward_cpu, np.ascontiguousarray(x), np.ascontiguousarray(w), y, SH, SW, PH, PW, DH, DW)
    return y


def depthwise_conv2d_grad_input_cpu(gy, w, C, H, W, SH, SW, PH, PW, DH, DW):
    """Numba input gradient, parallel over channels and blocks of images: each gathers its own taps, no races."""
    gx = np.empty((gy.shape[0], C, H, W), gy.dtype)
    _run(_grad_input_cpu, np.ascontiguousarray(gy), np.ascontiguousarray(w), gx, SH, SW, PH, PW, DH, DW)
    return gx


def depthwise_conv2d_grad_weight_cpu(x, gy, KH, KW, SH, SW, PH, PW, DH, DW):
    """Numba weight gradient, parallel over channels and blocks of images, then a float64 sum over blocks."""
    gw = np.empty((gy.shape[1], KH, KW), gy.dtype)
    _run(_grad_weight_cpu, np.ascontiguousarray(x), np.ascontiguousarray(gy), gw, SH, SW, PH, PW, DH, DW)
    return gw


def depthwise_conv2d_backward_cpu(x, gy, w, SH, SW, PH, PW, DH, DW):
    """Numba input and weight gradients together, reading gy once: (gx, gw)."""
    x, gy, w = np.ascontiguousarray(x), np.ascontiguousarray(gy), np.ascontiguousarray(w)
    gx = np.empty(x.shape, gy.dtype)
    gw = np.empty(w.shape, gy.dtype)
    _run(_backward_cpu, x, gy, w, gx, gw, SH, SW, PH, PW, DH, DW)
    return gx, gw


# tinyconv's thread policy (tinyconv/threads.py) runs Numba kernels on one thread below 2**24 elements; these
# do KH*KW multiply-adds per element, so a fork and join pays for itself from about this size on.
for _kernel in (depthwise_conv2d_cpu, depthwise_conv2d_grad_input_cpu, depthwise_conv2d_grad_weight_cpu,
                depthwise_conv2d_backward_cpu):
    _kernel.parallel_min_size = 1 << 18

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


def depthwise_conv2d_backward_cuda(x, gy, w, SH, SW, PH, PW, DH, DW):
    """CUDA input and weight gradients: the two kernels above, one after the other."""
    (C, H, W), (KH, KW) = x.shape[1:], w.shape[1:]
    return (depthwise_conv2d_grad_input_cuda(gy, w, C, H, W, SH, SW, PH, PW, DH, DW),
            depthwise_conv2d_grad_weight_cuda(x, gy, KH, KW, SH, SW, PH, PW, DH, DW))
