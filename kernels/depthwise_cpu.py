"""Depthwise convolution on the CPU, part 2: the Numba kernels (parallel over channel/image-block jobs) and the
``depthwise_conv2d*_cpu`` entry points (the math: ``depthwise.py``; the buffers and inner loops:
``depthwise_phases.py``).
"""
import numpy as np
from numba import get_num_threads, njit, prange, set_parallel_chunksize

from .depthwise_phases import (_axpy, _copy, _correlate, _dot, _dot3, _dot9, _from_phases, _phase_shape,
                               _scatter, _tap_offset, _tap_offsets, _to_phases, _to_rows, _zero)


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
