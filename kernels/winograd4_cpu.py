"""Winograd F(4x4, 3x3)'s tile transforms in Numba (the math and the NumPy reference: ``winograd4.py``).

As ``winograd_cpu.py`` for F(2x2, 3x3): one (image, channel) plane per parallel iteration, and each plane first
gathered (an index table built once per call) into phase planes in which one element of every tile of the plane
is one unit-stride run, so that each step of a transform is a vector loop over all the plane's TH*TW tiles
(loops along one row of tiles, 2-14 tiles here, are too short for Numba's vector code).  The phases are rows
modulo 4 and the tile's column j: Z[4j + p, s*TW + tw] = padded x[4s + p, 4tw + j], so element (i, j) of every
tile is Z[4j + i % 4, (i // 4)*TW:][:TH*TW].  Each loop reads at most five streams and writes one (more and
LLVM's run-time overlap checks give up vectorising).  The 6-point transforms are written as the usual
factorisations ((d3 + d4) - 4(d1 + d2) and so on); the constants are in the arrays' dtype, so float32 stays
float32.
"""
import numpy as np
from numba import njit, prange

from .winograd4 import tiles4
from .winograd_cpu import _deinterleave_index, _interleave_index  # (their tile size m as an argument)


@njit(cache=True, inline="always")
def _bt6(v0, v1, v2, v3, v4, v5, o0, o1, o2, o3, o4, o5):
    """(o0..o5) = B^T (v0..v5) over whole runs, one vector loop each."""
    two, four, five = v0.dtype.type(2), v0.dtype.type(4), v0.dtype.type(5)
    for t in range(o0.shape[0]):
        o0[t] = (v4[t] - five * v2[t]) + four * v0[t]
    for t in range(o0.shape[0]):
        o1[t] = (v3[t] + v4[t]) - four * (v1[t] + v2[t])
    for t in range(o0.shape[0]):
        o2[t] = (v4[t] - v3[t]) + four * (v1[t] - v2[t])
    for t in range(o0.shape[0]):
        o3[t] = (v4[t] - v2[t]) + two * (v3[t] - v1[t])
    for t in range(o0.shape[0]):
        o4[t] = (v4[t] - v2[t]) - two * (v3[t] - v1[t])
    for t in range(o0.shape[0]):
        o5[t] = (v5[t] - five * v3[t]) + four * v1[t]


@njit(cache=True, inline="always")
def _b6(v0, v1, v2, v3, v4, v5, o0, o1, o2, o3, o4, o5):
    """(o0..o5) = B (v0..v5), the adjoint of ``_bt6`` (B^T's columns), over whole runs."""
    two, four, five = v0.dtype.type(2), v0.dtype.type(4), v0.dtype.type(5)
    for t in range(o0.shape[0]):
        o0[t] = four * v0[t]
    for t in range(o0.shape[0]):
        o1[t] = four * ((v2[t] - v1[t]) + v5[t]) + two * (v4[t] - v3[t])
    for t in range(o0.shape[0]):
        o2[t] = -((five * v0[t] + four * (v1[t] + v2[t])) + (v3[t] + v4[t]))
    for t in range(o0.shape[0]):
        o3[t] = ((v1[t] - v2[t]) + two * (v3[t] - v4[t])) - five * v5[t]
    for t in range(o0.shape[0]):
        o4[t] = ((v1[t] + v2[t]) + (v3[t] + v4[t])) + v0[t]
    for t in range(o0.shape[0]):
        o5[t] = v5[t]


@njit(cache=True, inline="always")
def _at6(v0, v1, v2, v3, v4, v5, o0, o1, o2, o3):
    """(o0..o3) = A^T (v0..v5) over whole runs."""
    two, four, eight = v0.dtype.type(2), v0.dtype.type(4), v0.dtype.type(8)
    for t in range(o0.shape[0]):
        o0[t] = ((v1[t] + v2[t]) + (v3[t] + v4[t])) + v0[t]
    for t in range(o0.shape[0]):
        o1[t] = (v1[t] - v2[t]) + two * (v3[t] - v4[t])
    for t in range(o0.shape[0]):
        o2[t] = (v1[t] + v2[t]) + four * (v3[t] + v4[t])
    for t in range(o0.shape[0]):
        o3[t] = ((v1[t] - v2[t]) + eight * (v3[t] - v4[t])) + v5[t]


@njit(cache=True, inline="always")
def _a6(v0, v1, v2, v3, o0, o1, o2, o3, o4, o5):
    """(o0..o5) = A (v0..v3), the adjoint of ``_at6`` (A^T's columns), over whole runs."""
    two, four, eight = v0.dtype.type(2), v0.dtype.type(4), v0.dtype.type(8)
    for t in range(o0.shape[0]):
        o0[t] = v0[t]
    for t in range(o0.shape[0]):
        o1[t] = (v0[t] + v2[t]) + (v1[t] + v3[t])
    for t in range(o0.shape[0]):
        o2[t] = (v0[t] + v2[t]) - (v1[t] + v3[t])
    for t in range(o0.shape[0]):
        o3[t] = (v0[t] + four * v2[t]) + two * (v1[t] + four * v3[t])
    for t in range(o0.shape[0]):
        o4[t] = (v0[t] + four * v2[t]) - two * (v1[t] + four * v3[t])
    for t in range(o0.shape[0]):
        o5[t] = v3[t]


@njit(cache=True)
def _phase_index(H, W, PH, PW, TH, TW):
    """Where the phase planes come from: ``Z[4j + p, s*TW + tw]`` = zero-padded ``x[4s + p - PH, 4tw + j - PW]``
    as flat indices into one (H, W) plane (0 for the padding), and the flat places of the padding (zeros)."""
    R = (TH + 1) * TW
    src = np.zeros(24 * R, np.uint32)  # unsigned: no negative-index test in the gather loop
    pad = np.zeros(24 * R, np.bool_)
    for j in range(6):
        for p in range(4):
            for s in range(TH + 1):
                h = 4 * s + p - PH
                for tw in range(TW):
                    w = 4 * tw + j - PW
                    i = (4 * j + p) * R + s * TW + tw
                    if 0 <= h < H and 0 <= w < W:
                        src[i] = h * W + w
                    else:
                        pad[i] = True
    return src, np.nonzero(pad)[0]


@njit(parallel=True, cache=True, nogil=True)  # nogil: winograd_conv runs chunks on several threads
def _input_transform(x, V, PH, PW, TH, TW):
    """Per (image, channel) plane: the phase planes Z gathered (``_phase_index``), B^T down every tile column
    into T[6a + j], then B^T along the rows into V[6a + b]: 72 vector loops over all the plane's tiles."""
    N, C, H, W = x.shape
    TT, R = TH * TW, (TH + 1) * TW
    src, pads = _phase_index(H, W, PH, PW, TH, TW)
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        plane = x[n, c].reshape(H * W)
        buf = np.empty(24 * R + 36 * TT, x.dtype)
        Zf = buf[:24 * R]
        for k in range(16 * R):  # tile columns 0..3 gathered
            Zf[k] = plane[src[k]]
        Z = Zf.reshape((24, R))
        for jp in range(16, 24):  # columns 4, 5 of a tile are columns 0, 1 of the next tile: a shifted copy,
            z, z1, s = Z[jp], Z[jp - 16, 1:], src[jp * R:(jp + 1) * R]
            for k in range(R - 1):
                z[k] = z1[k]
            for k in range(TW - 1, R, TW):  # but a row's last tile's are not in the row
                z[k] = plane[s[k]]
        for k in range(pads.shape[0]):  # (the padding's places in every column, the copies' included)
            Zf[pads[k]] = 0
        T = buf[24 * R:].reshape((36, TT))
        for j in range(6):  # d_ij of every tile: Z[4j + i % 4, (i // 4)*TW:][:TT]
            z0, z1, z2, z3 = Z[4 * j], Z[4 * j + 1], Z[4 * j + 2], Z[4 * j + 3]
            _bt6(z0[:TT], z1[:TT], z2[:TT], z3[:TT], z0[TW:TW + TT], z1[TW:TW + TT],
                 T[j], T[6 + j], T[12 + j], T[18 + j], T[24 + j], T[30 + j])
        t0 = n * TT
        for a in range(6):
            e = 6 * a
            _bt6(T[e], T[e + 1], T[e + 2], T[e + 3], T[e + 4], T[e + 5],
                 V[e, c, t0:t0 + TT], V[e + 1, c, t0:t0 + TT], V[e + 2, c, t0:t0 + TT],
                 V[e + 3, c, t0:t0 + TT], V[e + 4, c, t0:t0 + TT], V[e + 5, c, t0:t0 + TT])


@njit(parallel=True, cache=True, nogil=True)  # nogil: winograd_conv runs chunks on several threads
def _output_transform(M, y, TH, TW):
    """Per (image, output channel) plane: A^T down the columns of every tile (Am[6p + j]), then along the rows
    into phase planes Y[4p + q] = y[4th + p, 4tw + q], then a gather puts them in place (cropped)."""
    N, K, OH, OW = y.shape
    TT = TH * TW
    src = _interleave_index(OH, OW, TH, TW, 4)
    for nk in prange(N * K):
        n, k = nk // K, nk % K
        t0 = n * TT
        buf = np.empty(40 * TT, M.dtype)
        Am = buf[:24 * TT].reshape((24, TT))
        Y = buf[24 * TT:].reshape((16, TT))
        for j in range(6):
            _at6(M[j, k, t0:t0 + TT], M[6 + j, k, t0:t0 + TT], M[12 + j, k, t0:t0 + TT],
                 M[18 + j, k, t0:t0 + TT], M[24 + j, k, t0:t0 + TT], M[30 + j, k, t0:t0 + TT],
                 Am[j], Am[6 + j], Am[12 + j], Am[18 + j])
        for p in range(4):
            e = 6 * p
            _at6(Am[e], Am[e + 1], Am[e + 2], Am[e + 3], Am[e + 4], Am[e + 5],
                 Y[4 * p], Y[4 * p + 1], Y[4 * p + 2], Y[4 * p + 3])
        Yf = buf[24 * TT:]
        out = y[n, k].reshape(OH * OW)
        for i in range(OH * OW):
            out[i] = Yf[src[i]]


@njit(parallel=True, cache=True, nogil=True)  # nogil: winograd_conv runs chunks on several threads
def _output_transform_adjoint(gy, dM, TH, TW):
    """Per plane: dY's 16 phase planes gathered (zero past OH and OW), A along the rows of every tile
    (Hm[6p + j]), then A down the columns into dM[6i + j]: vector loops over all the plane's tiles."""
    N, K, OH, OW = gy.shape
    TT = TH * TW
    src, pads = _deinterleave_index(OH, OW, TH, TW, 4)
    for nk in prange(N * K):
        n, k = nk // K, nk % K
        plane = gy[n, k].reshape(OH * OW)
        buf = np.empty(40 * TT, gy.dtype)
        Gf = buf[:16 * TT]
        for i in range(16 * TT):
            Gf[i] = plane[src[i]]
        for i in range(pads.shape[0]):
            Gf[pads[i]] = 0
        G = Gf.reshape((16, TT))
        Hm = buf[16 * TT:].reshape((24, TT))
        for p in range(4):
            e = 6 * p
            _a6(G[4 * p], G[4 * p + 1], G[4 * p + 2], G[4 * p + 3],
                Hm[e], Hm[e + 1], Hm[e + 2], Hm[e + 3], Hm[e + 4], Hm[e + 5])
        t0 = n * TT
        for j in range(6):
            _a6(Hm[j], Hm[6 + j], Hm[12 + j], Hm[18 + j],
                dM[j, k, t0:t0 + TT], dM[6 + j, k, t0:t0 + TT], dM[12 + j, k, t0:t0 + TT],
                dM[18 + j, k, t0:t0 + TT], dM[24 + j, k, t0:t0 + TT], dM[30 + j, k, t0:t0 + TT])


@njit(cache=True)
def _scatter_index(H, W, PH, PW, TH, TW):
    """For each element (h, w) of an (H, W) plane, the two places of its gradient in the flat buffer of
    ``_input_transform_adjoint``'s phase planes D[4j + p, s*TW + m] (R = (TH + 1)*TW each, then one zero):
    padded (h + PH, w + PW) = (4s + p, 4m + q) is column q of tile m and, for q < 2, column q + 4 of tile
    m - 1; a place that does not exist is the zero."""
    R = (TH + 1) * TW
    zero = 24 * R
    src = np.full((2, H * W), zero, np.uint32)
    for h in range(H):
        hp = h + PH
        p, s = hp % 4, hp // 4
        if s > TH:
            continue
        for w in range(W):
            wp = w + PW
            q, m = wp % 4, wp // 4
            if m < TW:
                src[0, h * W + w] = (4 * q + p) * R + s * TW + m
            if q < 2 and 1 <= m <= TW:
                src[1, h * W + w] = (4 * (q + 4) + p) * R + s * TW + m - 1
    return src


@njit(parallel=True, cache=True, nogil=True)  # nogil: winograd_conv runs chunks on several threads
def _input_transform_adjoint(dV, dx, PH, PW, TH, TW):
    """Per (image, channel) plane, the adjoint of ``_input_transform``: B along the rows of every tile
    (S[6a + j]), B down the columns (Dd[6i + j]), the tiles' overlapping rows added in the phase planes D
    (rows 4, 5 of tile row th are rows 0, 1 of th + 1), then each element of dx gathered from its one or two
    places (``_scatter_index``: the overlapping columns)."""
    N, C, H, W = dx.shape
    TT, R = TH * TW, (TH + 1) * TW
    src = _scatter_index(H, W, PH, PW, TH, TW)
    s0, s1 = src[0], src[1]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        t0 = n * TT
        buf = np.empty(72 * TT + 24 * R + 1, dV.dtype)
        S = buf[:36 * TT].reshape((36, TT))
        Dd = buf[36 * TT:72 * TT].reshape((36, TT))
        Df = buf[72 * TT:]
        D = Df[:24 * R].reshape((24, R))
        for a in range(6):
            e = 6 * a
            _b6(dV[e, c, t0:t0 + TT], dV[e + 1, c, t0:t0 + TT], dV[e + 2, c, t0:t0 + TT],
                dV[e + 3, c, t0:t0 + TT], dV[e + 4, c, t0:t0 + TT], dV[e + 5, c, t0:t0 + TT],
                S[e], S[e + 1], S[e + 2], S[e + 3], S[e + 4], S[e + 5])
        for j in range(6):
            _b6(S[j], S[6 + j], S[12 + j], S[18 + j], S[24 + j], S[30 + j],
                Dd[j], Dd[6 + j], Dd[12 + j], Dd[18 + j], Dd[24 + j], Dd[30 + j])
        for j in range(6):
            for p in range(4):  # rows 0..3 of every tile; the last tile row's rows 4, 5 start out zero
                d, dd = D[4 * j + p], Dd[6 * p + j]
                for t in range(TT):
                    d[t] = dd[t]
                for t in range(TT, R):
                    d[t] = 0
            for p in range(2):  # rows 4, 5 of tile row th: rows 0, 1 of tile row th + 1
                d, dd = D[4 * j + p, TW:], Dd[6 * (p + 4) + j]
                for t in range(TT):
                    d[t] += dd[t]
        Df[24 * R] = 0
        out = dx[n, c].reshape(H * W)
        for i in range(H * W):
            out[i] = Df[s0[i]] + Df[s1[i]]


def winograd4_input_transform_cpu(x, PH, PW, TH, TW):
    N, C = x.shape[:2]
    V = np.empty((36, C, N * TH * TW), x.dtype)
    _input_transform(np.ascontiguousarray(x), V, PH, PW, TH, TW)
    return V


def winograd4_output_transform_cpu(M, N, OH, OW):
    y = np.empty((N, M.shape[1], OH, OW), M.dtype)
    _output_transform(np.ascontiguousarray(M), y, *tiles4(OH, OW))
    return y


def winograd4_output_transform_adjoint_cpu(gy, TH, TW):
    N, K = gy.shape[:2]
    dM = np.empty((36, K, N * TH * TW), gy.dtype)
    _output_transform_adjoint(np.ascontiguousarray(gy), dM, TH, TW)
    return dM


def winograd4_input_transform_adjoint_cpu(dV, N, H, W, PH, PW, TH, TW):
    dx = np.empty((N, dV.shape[1], H, W), dV.dtype)
    _input_transform_adjoint(np.ascontiguousarray(dV), dx, PH, PW, TH, TW)
    return dx
