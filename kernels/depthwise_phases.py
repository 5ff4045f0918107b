"""Depthwise convolution on the CPU, part 1: the phase-split buffers and the vectorised inner loops that the
Numba kernels of ``depthwise_cpu.py`` are built from (the math: ``depthwise.py``).
"""
import numpy as np
from numba import njit

# -- the layout ---------------------------------------------------------------------------------------
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
