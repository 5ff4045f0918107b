"""im2col and col2im: unfold convolution windows into columns, and fold them back (scatter-add).

Shapes: x is (N, C, H, W); the kernel window is KH x KW with stride (SH, SW), dilation (DH, DW) and
top/left zero padding (PH, PW); the output grid is OH x OW.  The bottom/right padding is implied by OH, OW:
any tap that falls outside x reads zero, so asymmetric padding (PyTorch's ``padding='same'`` with an even
kernel) needs no special case.

Layout (chosen so the convolution is one GEMM per group with no copy of col)::

    col[c, kh, kw, n, oh, ow] = x[n, c, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]     (0 outside x)

Reshaped (free, contiguous) to ``(C*KH*KW, N*OH*OW)`` it is the right operand of ``W @ col`` with
``W`` of PyTorch's layout ``(K, C, KH, KW)`` reshaped to ``(K, C*KH*KW)``; with groups, ``(G, C/G*KH*KW,
N*OH*OW)`` meets ``(G, K/G, C/G*KH*KW)``.

col2im is the adjoint of im2col: ``x[n, c, h, w] = sum of col[c, kh, kw, n, oh, ow]`` over every
(kh, kw, oh, ow) whose tap lands on (h, w).  It maps the column gradient back to the input gradient.

Kernels (same signature for ``_numpy``, ``_cpu`` and ``_cuda``):

    im2col(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW) -> col (C, KH, KW, N, OH, OW)
    col2im(col, H, W, SH, SW, PH, PW, DH, DW)        -> x   (N, C, H, W)
"""
import numpy as np
from numba import cuda, njit, prange

_THREADS = 256


def _far_padding(size, P, K, S, D, O):
    """Zero padding needed past the end of an axis so that every one of the O windows fits (never negative)."""
    return max(0, (O - 1) * S + (K - 1) * D + 1 - size - P)


# -- NumPy reference ----------------------------------------------------------------------------------
def im2col_numpy(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    """Reference im2col: one strided slice of the padded input per kernel tap (kh, kw)."""
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (PH, _far_padding(H, PH, KH, SH, DH, OH)),
                    (PW, _far_padding(W, PW, KW, SW, DW, OW))))
    col = np.empty((C, KH, KW, N, OH, OW), x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            taps = xp[:, :, kh * DH:kh * DH + SH * (OH - 1) + 1:SH, kw * DW:kw * DW + SW * (OW - 1) + 1:SW]
            col[:, kh, kw] = taps.transpose(1, 0, 2, 3)
    return col


def col2im_numpy(col, H, W, SH, SW, PH, PW, DH, DW):
    """Reference col2im: add each tap's slice back into a padded buffer, then cut the padding off."""
    C, KH, KW, N, OH, OW = col.shape
    xp = np.zeros((N, C, H + PH + _far_padding(H, PH, KH, SH, DH, OH),
                   W + PW + _far_padding(W, PW, KW, SW, DW, OW)), col.dtype)
    for kh in range(KH):
        for kw in range(KW):
            xp[:, :, kh * DH:kh * DH + SH * (OH - 1) + 1:SH, kw * DW:kw * DW + SW * (OW - 1) + 1:SW] += \
                col[:, kh, kw].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(xp[:, :, PH:PH + H, PW:PW + W])


# -- Numba CPU ----------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _valid_range(P, offset, S, size, O):
    """Output positions o in [lo, hi) whose tap o*S - P + offset lies inside [0, size)."""
    lo = max(0, -((offset - P) // S))  # ceil((P - offset) / S)
    hi = min(O, (size - 1 + P - offset) // S + 1)
    return lo, max(lo, hi)


# Indices into the flat arrays are cast to unsigned (``np.uint64``) where they are used: Numba wraps a negative
# signed index around (as Python does), and that per-element check keeps LLVM from vectorising the row
# copies; unsigned, they compile to SIMD loads and stores (measured 3-5x faster on LeNet's layers).  Every
# index cast is >= 0.
@njit(cache=True, inline="always")
def _zero(a, start, stop):
    for i in range(stop - start):
        a[np.uint64(start + i)] = 0


@njit(parallel=True, cache=True, nogil=True)  # nogil: conv2d runs chunks on several threads
def _im2col_cpu(x, col, SH, SW, PH, PW, DH, DW):
    N, C, H, W = x.shape
    KH, KW, OH, OW = col.shape[1], col.shape[2], col.shape[4], col.shape[5]
    xf, colf = x.reshape(-1), col.reshape(-1)  # flat views: rows become contiguous runs
    for tap in prange(C * KH * KW):  # tap (c, kh, kw): its N planes of OH x OW start at tap*N*OH*OW
        kw = tap % KW
        kh = (tap // KW) % KH
        c = tap // (KW * KH)
        oh0, oh1 = _valid_range(PH, kh * DH, SH, H, OH)
        ow0, ow1 = _valid_range(PW, kw * DW, SW, W, OW)
        for n in range(N):
            plane = (tap * N + n) * OH * OW
            src_plane = (n * C + c) * H * W
            _zero(colf, plane, plane + oh0 * OW)  # rows whose tap falls in the top padding
            for oh in range(oh0, oh1):
                row = plane + oh * OW
                _zero(colf, row, row + ow0)
                dst = np.uint64(row + ow0)
                src = np.uint64(src_plane + (oh * SH - PH + kh * DH) * W + ow0 * SW - PW + kw * DW)  # x at ow0
                if SW == 1:
                    for i in range(ow1 - ow0):
                        colf[dst + np.uint64(i)] = xf[src + np.uint64(i)]
                else:
                    for i in range(ow1 - ow0):
                        colf[dst + np.uint64(i)] = xf[src + np.uint64(i * SW)]
                _zero(colf, row + ow1, row + OW)
            _zero(colf, plane + oh1 * OW, plane + OH * OW)  # and in the bottom padding


@njit(parallel=True, cache=True, nogil=True)  # nogil: conv2d runs chunks on several threads
def _col2im_cpu(col, x, SH, SW, PH, PW, DH, DW):
    C, KH, KW, N, OH, OW = col.shape
    H, W = x.shape[2], x.shape[3]
    xf, colf = x.reshape(-1), col.reshape(-1)
    for job in prange(N * C):  # each job owns the (n, c) plane of x at job*H*W: the scatter-add has no races
        n, c = job // C, job % C
        for kh in range(KH):
            oh0, oh1 = _valid_range(PH, kh * DH, SH, H, OH)
            for kw in range(KW):
                ow0, ow1 = _valid_range(PW, kw * DW, SW, W, OW)
                plane = (((c * KH + kh) * KW + kw) * N + n) * OH * OW
                for oh in range(oh0, oh1):
                    row = np.uint64(plane + oh * OW + ow0)
                    dst = np.uint64(job * H * W + (oh * SH - PH + kh * DH) * W + ow0 * SW - PW + kw * DW)
                    if SW == 1:
                        for i in range(ow1 - ow0):
                            xf[dst + np.uint64(i)] += colf[row + np.uint64(i)]
                    else:
                        for i in range(ow1 - ow0):
                            xf[dst + np.uint64(i * SW)] += colf[row + np.uint64(i)]


# im2col of a layer whose output rows are short (LeNet-5's C3: 5x5 taps, rows of 10; ResNet's 3x3 layers on
# 8x8 to 2x2 maps) with the stride and the row length compiled in.  The general kernel's row copy
# has a run-time length: LLVM vectorises it 16 floats at a time (AVX-512), so a row shorter than that runs in
# the scalar remainder, and the zeros of the padding take loops of their own.  With OW a constant, a row
# inside the input compiles to a few vector moves, and a row that reaches into the padding to one pass that
# picks the value or zero per column.  The same copies, so the same bits.  One thread, ms (general / compiled):
#   (17, 6, 14, 14) 5x5 -> 10x10           0.077 / 0.025   (one chunk of LeNet-5's C3 at batch 64)
#   (16, 64, 8, 8) 3x3/1 pad 1 -> 8x8      0.34-0.54 / 0.22-0.26   (resnet18 at 64x64, layer2)
#   (16, 128, 4, 4) 3x3/1 pad 1 -> 4x4     0.57 / 0.22-0.25
#   (16, 256, 2, 2) 3x3/1 pad 1 -> 2x2     0.37-0.49 / 0.21
#   (16, 128, 8, 8) 3x3/2 pad 1 -> 4x4     0.33-0.51 / 0.26
#   (16, 64, 16, 16) 3x3/1 pad 1 -> 16x16  0.73-1.0 / 0.87-1.1     (longer rows: not compiled)
# One kernel per (SH, SW, OW), compiled on first use (1.6-2 s) and cached on disk like the others; the window's
# size as a constant too made no difference (measured on the shapes above), and would multiply the compilations.
COMPILED_MAX_OW = 12
_compiled_im2col = {}  # (SH, SW, OW) -> kernel


def _compile_im2col(SH, SW, OW):
    """The im2col kernel of undilated windows at stride (SH, SW) over rows of OW outputs."""
    @njit(parallel=True, cache=True, nogil=True)
    def im2col(x, col, PH, PW):
        N, C, H, W = x.shape
        KH, KW, OH = col.shape[1], col.shape[2], col.shape[4]
        xf, colf = x.reshape(-1), col.reshape(-1)
        for tap in prange(C * KH * KW):  # as _im2col_cpu
            kw = tap % KW
            kh = (tap // KW) % KH
            c = tap // (KW * KH)
            oh0, oh1 = _valid_range(PH, kh, SH, H, OH)
            ow0, ow1 = _valid_range(PW, kw, SW, W, OW)
            for n in range(N):
                plane = (tap * N + n) * OH * OW
                src_plane = (n * C + c) * H * W
                _zero(colf, plane, plane + oh0 * OW)  # rows whose tap falls in the top padding
                for oh in range(oh0, oh1):
                    row = plane + oh * OW
                    src = src_plane + (oh * SH - PH + kh) * W - PW + kw  # x at ow = 0 (maybe in the padding)
                    if ow0 == 0 and ow1 == OW:  # the whole row inside x
                        for i in range(OW):
                            colf[np.uint64(row + i)] = xf[np.uint64(src + i * SW)]
                    else:  # columns in the padding read as zeros (and index nothing)
                        for i in range(OW):
                            colf[np.uint64(row + i)] = xf[np.uint64(src + i * SW)] if ow0 <= i < ow1 else 0
                _zero(colf, plane + oh1 * OW, plane + OH * OW)  # and in the bottom padding
    return im2col


# The CPU kernels fill arrays that NumPy allocates: NumPy asks the OS for huge pages for large arrays, and an
# allocation inside Numba page-faults 4 KiB at a time, which alone made im2col several times slower.
def im2col_cpu(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    """Numba im2col, parallel over the (c, kh, kw) taps."""
    N, C = x.shape[:2]
    col = np.empty((C, KH, KW, N, OH, OW), x.dtype)
    x = np.ascontiguousarray(x)
    if DH == DW == 1 and OW <= COMPILED_MAX_OW and col.size:
        key = (SH, SW, OW)
        if key not in _compiled_im2col:
            _compiled_im2col[key] = _compile_im2col(*key)
        _compiled_im2col[key](x, col, PH, PW)
    else:
        _im2col_cpu(x, col, SH, SW, PH, PW, DH, DW)
    return col


# col2im compiled the same way, for rows of at most COMPILED_COL2IM_MAX_OW outputs.  Its additions into
# overlapping windows do not vectorise as the copies do, so it gains less, and only on the shortest rows (one
# thread, ms, general / compiled): (16, 128, 4, 4) 3x3/1 pad 1 0.29 / 0.16; (16, 256, 2, 2) 0.56 / 0.24;
# (16, 128, 8, 8) 3x3/2 pad 1 (rows of 4) 0.43 / 0.23; (16, 64, 8, 8) 3x3/1 pad 1 (rows of 8) 0.29 / 0.25;
# LeNet-5's C3 (rows of 10) 0.29 / 0.39, so not there.  The same additions in the same order: the same bits.
# Unlike im2col's, this kernel needs the window's size compiled in too (unrolled over the taps, the additions
# into one x row are scheduled together; with KH, KW at run time it lost its gain: (16, 256, 2, 2) 0.46 ms).
COMPILED_COL2IM_MAX_OW = 8
_compiled_col2im = {}  # (KH, KW, SH, SW, OW) -> kernel


def _compile_col2im(KH, KW, SH, SW, OW):
    """The col2im kernel of undilated KH x KW windows at stride (SH, SW) over rows of OW outputs."""
    @njit(parallel=True, cache=True, nogil=True)
    def col2im(col, x, PH, PW):
        C, N, OH = col.shape[0], col.shape[3], col.shape[4]
        H, W = x.shape[2], x.shape[3]
        xf, colf = x.reshape(-1), col.reshape(-1)
        for job in prange(N * C):  # as _col2im_cpu
            n, c = job // C, job % C
            for kh in range(KH):
                oh0, oh1 = _valid_range(PH, kh, SH, H, OH)
                for kw in range(KW):
                    ow0, ow1 = _valid_range(PW, kw, SW, W, OW)
                    plane = (((c * KH + kh) * KW + kw) * N + n) * OH * OW
                    for oh in range(oh0, oh1):
                        row = plane + oh * OW
                        dst = job * H * W + (oh * SH - PH + kh) * W - PW + kw  # x at ow = 0 (maybe padding)
                        if ow0 == 0 and ow1 == OW:
                            for i in range(OW):
                                xf[np.uint64(dst + i * SW)] += colf[np.uint64(row + i)]
                        else:
                            for i in range(ow0, ow1):
                                xf[np.uint64(dst + i * SW)] += colf[np.uint64(row + i)]
    return col2im


def col2im_cpu(col, H, W, SH, SW, PH, PW, DH, DW):
    """Numba col2im, parallel over (n, c) planes of the result (scatter-add without races)."""
    C, KH, KW, N, OH, OW = col.shape
    x = np.zeros((N, C, H, W), col.dtype)
    col = np.ascontiguousarray(col)
    if DH == DW == 1 and OW <= COMPILED_COL2IM_MAX_OW and col.size:
        key = (KH, KW, SH, SW, OW)
        if key not in _compiled_col2im:
            _compiled_col2im[key] = _compile_col2im(*key)
        _compiled_col2im[key](col, x, PH, PW)
    else:
        _col2im_cpu(col, x, SH, SW, PH, PW, DH, DW)
    return x


# -- numba.cuda ---------------------------------------------------------------------------------------
# Two versions of each kernel.  The 32-bit one, used whenever every index fits (below INDEX32_LIMIT elements),
# decomposes the flat index in unsigned 32-bit arithmetic: a GPU divides 32-bit integers in about 20
# instructions, 64-bit ones in a slow emulation (LLVM guards each with a run-time test for small operands), and
# Numba types every integer operation as 64-bit, so each intermediate is cast back to uint32 (``_u``), which lets
# LLVM narrow the operation itself.  Rows and columns are counted in the padded image (never negative), so no
# unsigned subtraction wraps.  The 64-bit kernels serve larger arrays and non-contiguous ones.
INDEX32_LIMIT = 2**31  # elements of col and of x; keeps i + gridsize below 2**32 too
_u = np.uint32


@cuda.jit
def _im2col_kernel32(xf, colf, C, H, W, KH, KW, N, OH, OW, SH, SW, PH, PW, DH, DW, zero):
    """im2col on flat contiguous arrays: ``colf`` is col (C, KH, KW, N, OH, OW), ``xf`` is x (N, C, H, W)."""
    total, step = _u(colf.size), _u(cuda.gridsize(1))
    i = _u(cuda.grid(1))
    while i < total:  # one thread per col element, in col's order: the writes coalesce
        q = _u(i // OW)
        ow = _u(i - _u(q * OW))
        r = _u(q // OH)
        oh = _u(q - _u(r * OH))
        q = _u(r // N)
        n = _u(r - _u(q * N))
        r = _u(q // KW)
        kw = _u(q - _u(r * KW))
        c = _u(r // KH)
        kh = _u(r - _u(c * KH))
        hp = _u(_u(oh * SH) + _u(kh * DH))  # the tap's row in the padded image: h + PH
        wp = _u(_u(ow * SW) + _u(kw * DW))
        if PH <= hp and _u(hp - PH) < H and PW <= wp and _u(wp - PW) < W:
            colf[i] = xf[_u(_u(_u(_u(_u(_u(n * C) + c) * H) + _u(hp - PH)) * W) + wp) - PW]
        else:
            colf[i] = zero
        i = _u(i + step)


@cuda.jit
def _col2im_kernel32(colf, xf, C, H, W, KH, KW, N, OH, OW, SH, SW, PH, PW, DH, DW, zero):
    """col2im on flat contiguous arrays (``_im2col_kernel32``'s layouts)."""
    total, step = _u(xf.size), _u(cuda.gridsize(1))
    i = _u(cuda.grid(1))
    while i < total:  # one thread per x element: a gather, no atomics
        q = _u(i // W)
        w = _u(i - _u(q * W))
        r = _u(q // H)
        h = _u(q - _u(r * H))
        n = _u(r // C)
        c = _u(r - _u(n * C))
        acc = zero
        hp, wp = _u(h + PH), _u(w + PW)
        kh = _u(0)
        while kh < KH and _u(kh * DH) <= hp:  # th = h + PH - kh*DH falls as kh grows: stop below row 0
            th = _u(hp - _u(kh * DH))  # = oh * SH for the window that puts tap kh on row h
            oh = _u(th // SH)
            if _u(oh * SH) == th and oh < OH:
                kw = _u(0)
                while kw < KW and _u(kw * DW) <= wp:
                    tw = _u(wp - _u(kw * DW))
                    ow = _u(tw // SW)
                    if _u(ow * SW) == tw and ow < OW:
                        row = _u(_u(_u(_u(_u(_u(c * KH) + kh) * KW) + kw) * N) + n)
                        acc += colf[_u(_u(_u(row * OH) + oh) * OW) + ow]
                    kw = _u(kw + 1)
            kh = _u(kh + 1)
        xf[i] = acc
        i = _u(i + step)


@cuda.jit
def _im2col_kernel64(x, col, SH, SW, PH, PW, DH, DW, zero):
    C, KH, KW, N, OH, OW = col.shape
    H, W = x.shape[2], x.shape[3]
    total = C * KH * KW * N * OH * OW
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):  # one thread per col element
        ow = i % OW
        oh = (i // OW) % OH
        n = (i // (OW * OH)) % N
        kw = (i // (OW * OH * N)) % KW
        kh = (i // (OW * OH * N * KW)) % KH
        c = i // (OW * OH * N * KW * KH)
        h = oh * SH - PH + kh * DH
        w = ow * SW - PW + kw * DW
        col[c, kh, kw, n, oh, ow] = x[n, c, h, w] if 0 <= h < H and 0 <= w < W else zero


@cuda.jit
def _col2im_kernel64(col, x, SH, SW, PH, PW, DH, DW, zero):
    C, KH, KW, N, OH, OW = col.shape
    H, W = x.shape[2], x.shape[3]
    total = N * C * H * W
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):  # one thread per x element: a gather, no atomics
        w = i % W
        h = (i // W) % H
        c = (i // (W * H)) % C
        n = i // (W * H * C)
        acc = zero
        for kh in range(KH):
            th = h + PH - kh * DH  # = oh * SH for the window that puts tap kh on row h
            if th < 0 or th % SH != 0 or th // SH >= OH:
                continue
            for kw in range(KW):
                tw = w + PW - kw * DW
                if tw < 0 or tw % SW != 0 or tw // SW >= OW:
                    continue
                acc += col[c, kh, kw, n, th // SH, tw // SW]
        x[n, c, h, w] = acc


_launches = {}  # (kernel, blocks) -> the configured kernel: built once, not on every call


def _blocks(total):
    """Blocks of ``_THREADS`` for ``total`` threads' worth of work, capped (grid-stride loops cover the rest)."""
    return max(1, min((total + _THREADS - 1) // _THREADS, 65535 * 16))


def _launch(kernel, total):
    """``kernel[_blocks(total), _THREADS]``, configured once per grid size rather than on every call."""
    blocks = _blocks(total)
    key = (kernel, blocks)
    configured = _launches.get(key)
    if configured is None:
        configured = _launches[key] = kernel[blocks, _THREADS]
    return configured


def fits_index32(*sizes):
    """Whether arrays of these element counts can be indexed by the 32-bit kernels."""
    return max(sizes) < INDEX32_LIMIT


def im2col_cuda(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, *, index32=None):
    """CUDA im2col: one thread per col element; returns a Numba device array.  ``index32``: force the 32-bit
    (True) or 64-bit (False) kernel; by default the 32-bit one whenever the sizes allow it and x is contiguous."""
    N, C, H, W = x.shape
    col = cuda.device_array((C, KH, KW, N, OH, OW), dtype=x.dtype)
    zero = x.dtype.type(0)
    if (fits_index32(col.size, x.size) and x.flags["C_CONTIGUOUS"]) if index32 is None else index32:
        sizes = [_u(v) for v in (C, H, W, KH, KW, N, OH, OW, SH, SW, PH, PW, DH, DW)]
        _launch(_im2col_kernel32, col.size)(x.reshape(x.size), col.reshape(col.size), *sizes, zero)
    else:
        _launch(_im2col_kernel64, col.size)(x, col, SH, SW, PH, PW, DH, DW, zero)
    return col


def col2im_cuda(col, H, W, SH, SW, PH, PW, DH, DW, *, index32=None):
    """CUDA col2im: one thread per input element, summing the taps that land on it (``index32`` as in
    ``im2col_cuda``)."""
    C, KH, KW, N, OH, OW = col.shape
    x = cuda.device_array((N, C, H, W), dtype=col.dtype)
    zero = col.dtype.type(0)
    if (fits_index32(col.size, x.size) and col.flags["C_CONTIGUOUS"]) if index32 is None else index32:
        sizes = [_u(v) for v in (C, H, W, KH, KW, N, OH, OW, SH, SW, PH, PW, DH, DW)]
        _launch(_col2im_kernel32, x.size)(col.reshape(col.size), x.reshape(x.size), *sizes, zero)
    else:
        _launch(_col2im_kernel64, x.size)(col, x, SH, SW, PH, PW, DH, DW, zero)
    return x
