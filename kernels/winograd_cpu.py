"""Winograd F(2x2, 3x3)'s tile transforms in Numba (the math and the NumPy reference: ``winograd.py``).

One (image, channel) plane per parallel iteration.  A plane's tiles overlap (stride 2, 4 wide), so the loops
that follow the matrix formulas tile by tile run along one row of tiles: 8-28 elements, too short for Numba's
vector code, whose setup then costs more than the arithmetic.  Here each plane is first split by parity
(rows 2r + p, columns 2m + q) with an index table built once per call and a gather, so that one element of
every tile of the plane is one unit-stride run, and each of a transform's 16 outputs is one vector loop over
all the plane's TH*TW tiles.  The additions are tile by tile's, in its order: the same bits as the formulas
written out per tile.
"""
import numpy as np
from numba import njit, prange

from .winograd import tiles


@njit(cache=True, inline="always")
def _b4(v0, v1, v2, v3):
    """B (the adjoint of B^T) applied to four values."""
    return v0, v1 - v2 + v3, v2 + v1 - v0, -v3


@njit(cache=True)
def _parity_index(H, W, PH, PW, TH, TW):
    """Where the parity planes of ``_input_transform`` come from: ``Z[4p + j, r*TW + tw]`` = zero-padded
    ``x[2r + p - PH, 2tw + j - PW]`` (p: the row's parity, j: the column within a tile) as flat indices into one
    (H, W) plane (0 for the padding), and the list of the padding's places, which get zeros."""
    R = (TH + 1) * TW
    src = np.zeros((8, R), np.uint32)  # unsigned: no negative-index test in the gather loop
    pad = np.zeros((8, R), np.bool_)
    for p in range(2):
        for j in range(4):
            for r in range(TH + 1):
                h = 2 * r + p - PH
                for tw in range(TW):
                    w = 2 * tw + j - PW
                    if 0 <= h < H and 0 <= w < W:
                        src[4 * p + j, r * TW + tw] = h * W + w
                    else:
                        pad[4 * p + j, r * TW + tw] = True
    return src, np.nonzero(pad.ravel())[0]


@njit(cache=True, inline="always")
def _tile_rows(V, e0, c, t0, TT, p0, q0, p1, q1, p2, q2, p3, q3, add):
    """Row a = e0 // 4 of B^T d B for all TT tiles of a plane: from the column step's r_j = p_j + q_j (``add``)
    or p_j - q_j, the row step (v0, v1, v2, v3) = (r0 - r2, r1 + r2, r2 - r1, r1 - r3), one vector loop each."""
    v = V[e0, c, t0:t0 + TT]
    if add:
        for t in range(TT):
            v[t] = (p0[t] + q0[t]) - (p2[t] + q2[t])
        v = V[e0 + 1, c, t0:t0 + TT]
        for t in range(TT):
            v[t] = (p1[t] + q1[t]) + (p2[t] + q2[t])
        v = V[e0 + 2, c, t0:t0 + TT]
        for t in range(TT):
            v[t] = (p2[t] + q2[t]) - (p1[t] + q1[t])
        v = V[e0 + 3, c, t0:t0 + TT]
        for t in range(TT):
            v[t] = (p1[t] + q1[t]) - (p3[t] + q3[t])
    else:
        for t in range(TT):
            v[t] = (p0[t] - q0[t]) - (p2[t] - q2[t])
        v = V[e0 + 1, c, t0:t0 + TT]
        for t in range(TT):
            v[t] = (p1[t] - q1[t]) + (p2[t] - q2[t])
        v = V[e0 + 2, c, t0:t0 + TT]
        for t in range(TT):
            v[t] = (p2[t] - q2[t]) - (p1[t] - q1[t])
        v = V[e0 + 3, c, t0:t0 + TT]
        for t in range(TT):
            v[t] = (p1[t] - q1[t]) - (p3[t] - q3[t])


@njit(parallel=True, cache=True, nogil=True)  # nogil: winograd_conv runs chunks on several threads
def _input_transform(x, V, PH, PW, TH, TW):
    """Per (image, channel) plane: the padded plane split by row parity and tile column into eight planes Z
    (``_parity_index``), so that element (i, j) of every tile of the plane is one unit-stride run,
    Z[4(i % 2) + j, (i // 2)*TW:][:TH*TW], tile t = th*TW + tw; then B^T d B as 16 vector loops over all tiles
    (row by row, the loops would be TW long: too short to vectorise).  The same additions, in the same order,
    as transforming tile by tile: down the columns, then along the rows."""
    N, C, H, W = x.shape
    TT, R = TH * TW, (TH + 1) * TW
    src, pads = _parity_index(H, W, PH, PW, TH, TW)
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        plane = x[n, c].reshape(H * W)
        Z = np.empty((8, R), x.dtype)
        for pj in (0, 1, 4, 5):  # columns 0, 1 of a tile gathered; columns 2, 3 are those of the next tile
            z, s = Z[pj], src[pj]
            for k in range(R):
                z[k] = plane[s[k]]
            z2, z1, s = Z[pj + 2], Z[pj, 1:], src[pj + 2]
            for k in range(R - 1):
                z2[k] = z1[k]
            for k in range(TW - 1, R, TW):  # but a row's last tile's are not in the row
                z2[k] = plane[s[k]]
        Zf = Z.reshape(8 * R)
        for k in range(pads.shape[0]):
            Zf[pads[k]] = 0
        t0 = n * TT
        a0, a1, a2, a3 = Z[0, :TT], Z[1, :TT], Z[2, :TT], Z[3, :TT]              # d_0j: row 2th
        b0, b1, b2, b3 = Z[4, :TT], Z[5, :TT], Z[6, :TT], Z[7, :TT]              # d_1j: row 2th + 1
        c0, c1, c2, c3 = Z[0, TW:], Z[1, TW:], Z[2, TW:], Z[3, TW:]              # d_2j: row 2th + 2
        d0, d1, d2, d3 = Z[4, TW:], Z[5, TW:], Z[6, TW:], Z[7, TW:]              # d_3j: row 2th + 3
        _tile_rows(V, 0, c, t0, TT, a0, c0, a1, c1, a2, c2, a3, c3, False)    # column step r0 = d0 - d2
        _tile_rows(V, 4, c, t0, TT, b0, c0, b1, c1, b2, c2, b3, c3, True)     # r1 = d1 + d2
        _tile_rows(V, 8, c, t0, TT, c0, b0, c1, b1, c2, b2, c3, b3, False)    # r2 = d2 - d1
        _tile_rows(V, 12, c, t0, TT, b0, d0, b1, d1, b2, d2, b3, d3, False)   # r3 = d1 - d3


@njit(cache=True)
def _interleave_index(OH, OW, TH, TW, m):
    """For each element (h, w) of an (OH, OW) plane, its place in the m*m phase planes (m*m, TH*TW) flattened
    of m x m output tiles (m = 2: F(2x2, 3x3)'s parity planes; m = 4: ``winograd4_cpu.py``'s):
    plane m*p + q, tile th*TW + tw, where h = m*th + p, w = m*tw + q (unsigned: no negative-index test)."""
    TT = TH * TW
    src = np.empty(OH * OW, np.uint32)
    for h in range(OH):
        for w in range(OW):
            src[h * OW + w] = (m * (h % m) + w % m) * TT + (h // m) * TW + w // m
    return src


@njit(parallel=True, cache=True, nogil=True)  # nogil: winograd_conv runs chunks on several threads
def _output_transform(M, y, TH, TW):
    """Per (image, output channel) plane, as ``_input_transform`` in reverse: A^T M A as vector loops over all
    the plane's tiles, into four parity planes, y[2th + p, 2tw + q] = Y[2p + q, th*TW + tw]; then a gather puts
    them in place (cropped to OH x OW).  Rows of A^T M, then along them: tile by tile's additions and bits."""
    N, K, OH, OW = y.shape
    TT = TH * TW
    src = _interleave_index(OH, OW, TH, TW, 2)
    for nk in prange(N * K):
        n, k = nk // K, nk % K
        t0 = n * TT
        am = np.empty((8, TT), M.dtype)  # A^T M: rows p = 0, 1 (am[4p + j]) of every tile
        for j in range(4):
            m0, m1 = M[j, k, t0:t0 + TT], M[4 + j, k, t0:t0 + TT]
            m2, m3 = M[8 + j, k, t0:t0 + TT], M[12 + j, k, t0:t0 + TT]
            a = am[j]
            for t in range(TT):
                a[t] = m0[t] + m1[t] + m2[t]
            a = am[4 + j]
            for t in range(TT):
                a[t] = m1[t] - m2[t] - m3[t]
        Y = np.empty((4, TT), M.dtype)   # (A^T M) A: Y[2p + q] = y[2th + p, 2tw + q] of every tile
        for p in range(2):
            b0, b1, b2, b3 = am[4 * p], am[4 * p + 1], am[4 * p + 2], am[4 * p + 3]
            o = Y[2 * p]
            for t in range(TT):
                o[t] = b0[t] + b1[t] + b2[t]
            o = Y[2 * p + 1]
            for t in range(TT):
                o[t] = b1[t] - b2[t] - b3[t]
        Yf = Y.reshape(4 * TT)
        out = y[n, k].reshape(OH * OW)
        for i in range(OH * OW):
            out[i] = Yf[src[i]]


@njit(cache=True)
def _deinterleave_index(OH, OW, TH, TW, m):
    """The reverse: for each place of the phase planes G[m*p + q, th*TW + tw] = gy[m*th + p, m*tw + q], its
    flat index into an (OH, OW) plane (0 past OH or OW), and the list of those past the edge (they get zeros)."""
    TT = TH * TW
    src = np.zeros(m * m * TT, np.uint32)
    pad = np.zeros(m * m * TT, np.bool_)
    for p in range(m):
        for q in range(m):
            for th in range(TH):
                for tw in range(TW):
                    h, w = m * th + p, m * tw + q
                    i = (m * p + q) * TT + th * TW + tw
                    if h < OH and w < OW:
                        src[i] = h * OW + w
                    else:
                        pad[i] = True
    return src, np.nonzero(pad)[0]


@njit(cache=True, inline="always")
def _dm_rows(dM, i, k, t0, TT, u, v):
    """Row i of A dY A^T for all TT tiles of a plane, from row i of A dY as (u, v): (u, u + v, u - v, -v)."""
    d = dM[4 * i, k, t0:t0 + TT]
    for t in range(TT):
        d[t] = u[t]
    d = dM[4 * i + 1, k, t0:t0 + TT]
    for t in range(TT):
        d[t] = u[t] + v[t]
    d = dM[4 * i + 2, k, t0:t0 + TT]
    for t in range(TT):
        d[t] = u[t] - v[t]
    d = dM[4 * i + 3, k, t0:t0 + TT]
    for t in range(TT):
        d[t] = -v[t]


@njit(parallel=True, cache=True, nogil=True)  # nogil: winograd_conv runs chunks on several threads
def _output_transform_adjoint(gy, dM, TH, TW):
    """Per plane: dY's four parity planes (zero past OH and OW) gathered, then A dY A^T row by row of the tile,
    each row's four outputs a vector loop over all the plane's tiles (tile by tile's additions and bits)."""
    N, K, OH, OW = gy.shape
    TT = TH * TW
    src, pads = _deinterleave_index(OH, OW, TH, TW, 2)
    for nk in prange(N * K):
        n, k = nk // K, nk % K
        plane = gy[n, k].reshape(OH * OW)
        G = np.empty((6, TT), gy.dtype)  # dY's parity planes; then row i of A dY, (u, v)
        Gf = G.reshape(6 * TT)
        for i in range(4 * TT):
            Gf[i] = plane[src[i]]
        for i in range(pads.shape[0]):
            Gf[pads[i]] = 0
        t0 = n * TT
        g00, g01, g10, g11, u, v = G[0], G[1], G[2], G[3], G[4], G[5]
        # A's rows are (1, 0), (1, 1), (1, -1), (0, -1): row i of A dY from the tile's rows 0 (g0q) and 1 (g1q)
        _dm_rows(dM, 0, k, t0, TT, g00, g01)
        for t in range(TT):
            u[t] = g00[t] + g10[t]
        for t in range(TT):
            v[t] = g01[t] + g11[t]
        _dm_rows(dM, 1, k, t0, TT, u, v)
        for t in range(TT):
            u[t] = g00[t] - g10[t]
        for t in range(TT):
            v[t] = g01[t] - g11[t]
        _dm_rows(dM, 2, k, t0, TT, u, v)
        for t in range(TT):
            u[t] = -g10[t]
        for t in range(TT):
            v[t] = -g11[t]
        _dm_rows(dM, 3, k, t0, TT, u, v)


@njit(cache=True, inline="always")
def _b4_loops(v0, v1, v2, v3, s0, s1, s2, s3):
    """``_b4`` over whole runs: (s0, s1, s2, s3) = B (v0, v1, v2, v3), one vector loop each."""
    for t in range(v0.shape[0]):
        s0[t] = v0[t]
    for t in range(v0.shape[0]):
        s1[t] = v1[t] - v2[t] + v3[t]
    for t in range(v0.shape[0]):
        s2[t] = v2[t] + v1[t] - v0[t]
    for t in range(v0.shape[0]):
        s3[t] = -v3[t]


@njit(cache=True)
def _scatter_index(H, W, PH, PW, TH, TW):
    """For each element (h, w) of an (H, W) plane, where ``_input_transform_adjoint`` reads its gradient in the
    flat buffer DP: padded (h + PH, w + PW) = (2r + p, 2m + q) is DP[(2p + q)*R + r*TW + m] for m < TW,
    DP[4R + (2p + q)*(TH + 1) + r] for m = TW (the last tile's columns 2, 3), DP's last element (a zero) past
    the tiles; R = (TH + 1)*TW."""
    R = (TH + 1) * TW
    zero = 4 * R + 4 * (TH + 1)
    src = np.empty(H * W, np.uint32)
    for h in range(H):
        hp = h + PH
        p, r = hp % 2, hp // 2
        for w in range(W):
            wp = w + PW
            q, m = wp % 2, wp // 2
            if r > TH or m > TW:
                src[h * W + w] = zero
            elif m < TW:
                src[h * W + w] = (2 * p + q) * R + r * TW + m
            else:
                src[h * W + w] = 4 * R + (2 * p + q) * (TH + 1) + r
    return src


@njit(parallel=True, cache=True, nogil=True)  # nogil: winograd_conv runs chunks on several threads
def _input_transform_adjoint(dV, dx, PH, PW, TH, TW):
    """Per (image, channel) plane, the adjoint of ``_input_transform`` in tile by tile's order (and bits): B
    along each row of every tile (``_b4``), the tiles' overlapping columns added (column 2m + q: tile m's
    element q after tile m - 1's element q + 2, so in parity planes), then B down each column and the
    overlapping rows added the same way; a gather takes x's own elements out of the padded plane's parity planes.
    Each step is a vector loop over all the plane's tiles; a tile row's first and last tiles are fixed up."""
    N, C, H, W = dx.shape
    TT, R = TH * TW, (TH + 1) * TW
    src = _scatter_index(H, W, PH, PW, TH, TW)
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        t0 = n * TT
        zero = dV.dtype.type(0)  # "zero + s": the first addition into tile by tile's zeroed rows (its signed zeros)
        buf = np.empty(16 * TT + 12 * TH + 4 * R + 4 * (TH + 1) + 1, dV.dtype)  # one allocation per plane
        S = buf[:4 * TT].reshape((4, TT))
        Rm = buf[4 * TT:12 * TT].reshape((8, TT))   # B along each row of the tiles, overlapped: row a, parity q
        d = buf[12 * TT:16 * TT].reshape((4, TT))
        o0 = 16 * TT
        Rx = buf[o0:o0 + 8 * TH].reshape((8, TH))    # the same for column 2TW + q (the last tile's only)
        dxc = buf[o0 + 8 * TH:o0 + 12 * TH].reshape((4, TH))
        DP = buf[o0 + 12 * TH:]   # dpad's four parity planes, their last columns, a zero
        for a in range(4):
            v0, v1 = dV[4 * a, c, t0:t0 + TT], dV[4 * a + 1, c, t0:t0 + TT]
            v2, v3 = dV[4 * a + 2, c, t0:t0 + TT], dV[4 * a + 3, c, t0:t0 + TT]
            _b4_loops(v0, v1, v2, v3, S[0], S[1], S[2], S[3])
            for q in range(2):
                sq, sq2, rq = S[q], S[q + 2], Rm[2 * a + q]
                sq2m = S[q + 2, :TT - 1]
                rq1, sq1 = Rm[2 * a + q, 1:], S[q, 1:]
                for t in range(TT - 1):   # column 2m + q: tile m's element q after tile m - 1's element q + 2
                    rq1[t] = (zero + sq2m[t]) + sq1[t]
                for th in range(TH):      # a row's first tile has no left neighbour
                    rq[th * TW] = zero + sq[th * TW]
                    Rx[2 * a + q, th] = zero + sq2[th * TW + TW - 1]
        DP[-1] = zero
        for q in range(2):   # B down each column; then rows 2th + i of the tiles overlapped
            _b4_loops(Rm[q], Rm[2 + q], Rm[4 + q], Rm[6 + q], d[0], d[1], d[2], d[3])
            for th in range(TH):
                dxc[0, th], dxc[1, th], dxc[2, th], dxc[3, th] = _b4(Rx[q, th], Rx[2 + q, th], Rx[4 + q, th],
                                                                     Rx[6 + q, th])
            for p in range(2):
                o = DP[(2 * p + q) * R:(2 * p + q + 1) * R]
                dp, dp2 = d[p], d[p + 2]
                for t in range(TW):
                    o[t] = zero + dp[t]
                o1, dp1, dp2m = o[TW:TT], dp[TW:], dp2[:TT - TW]
                for t in range(TT - TW):
                    o1[t] = (zero + dp2m[t]) + dp1[t]
                o2, dp2e = o[TT:], dp2[TT - TW:]
                for t in range(TW):
                    o2[t] = zero + dp2e[t]
                ox = DP[4 * R + (2 * p + q) * (TH + 1):4 * R + (2 * p + q + 1) * (TH + 1)]
                ox[0] = zero + dxc[p, 0]
                for th in range(1, TH):
                    ox[th] = (zero + dxc[p + 2, th - 1]) + dxc[p, th]
                ox[TH] = zero + dxc[p + 2, TH - 1]
        out = dx[n, c].reshape(H * W)
        for i in range(H * W):
            out[i] = DP[src[i]]


def winograd_input_transform_cpu(x, PH, PW, TH, TW):
    N, C = x.shape[:2]
    V = np.empty((16, C, N * TH * TW), x.dtype)
    _input_transform(np.ascontiguousarray(x), V, PH, PW, TH, TW)
    return V


def winograd_output_transform_cpu(M, N, OH, OW):
    y = np.empty((N, M.shape[1], OH, OW), M.dtype)
    _output_transform(M, y, *tiles(OH, OW))
    return y


def winograd_output_transform_adjoint_cpu(gy, TH, TW):
    N, K = gy.shape[:2]
    dM = np.empty((16, K, N * TH * TW), gy.dtype)
    _output_transform_adjoint(np.ascontiguousarray(gy), dM, TH, TW)
    return dM


def winograd_input_transform_adjoint_cpu(dV, N, H, W, PH, PW, TH, TW):
    dx = np.empty((N, dV.shape[1], H, W), dV.dtype)
    _input_transform_adjoint(np.ascontiguousarray(dV), dx, PH, PW, TH, TW)
    return dx
