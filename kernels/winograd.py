"""Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2016): the tile transforms of a 3x3, stride-1
convolution and their adjoints (for the two gradients).

A 3x3 correlation producing a 2x2 output tile Y from a 4x4 input tile d (overlapping its neighbours by 2) is

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A        ((.): element-wise product of 4x4 matrices)

    B^T = | 1  0 -1  0 |      G = |  1    0    0  |      A^T = | 1  1  1  0 |
          | 0  1  1  0 |          | 1/2  1/2  1/2 |            | 0  1 -1 -1 |
          | 0 -1  1  0 |          | 1/2 -1/2  1/2 |
          | 0  1  0 -1 |          |  0    0    1  |

16 multiplications per tile and channel pair instead of 36.  Over channels the products become, for each of
the 16 positions e = (i, j) of the 4x4 tile, one matrix product: with U[e] = (G g G^T)[e] as a (K, C) matrix and
V[e] = (B^T d B)[e] as (C, T) over the T = N*TH*TW tiles, M[e] = U[e] @ V[e] (K, T), and Y = A^T M A per tile.

Shapes: x (N, C, H, W), top/left padding (PH, PW), output (OH, OW) (bottom/right padding implied, zeros);
tiles TH = ceil(OH/2) by TW = ceil(OW/2); tile t = (n*TH + th)*TW + tw covers output rows 2th, 2th+1 and reads
input rows 2th - PH .. 2th - PH + 3 (zero outside x).  Transformed arrays are (16, C or K, T), position-major.

Kernels (``_numpy``: the matrix formulas with einsum over all tiles at once; ``_cpu``: Numba, the same
additions written out, parallel over the (image, channel) planes):

    winograd_input_transform(x, PH, PW, TH, TW)         -> V  (16, C, N*TH*TW)     V = B^T d B
    winograd_output_transform(M, N, OH, OW)             -> y  (N, K, OH, OW)       y = A^T M A
    winograd_output_transform_adjoint(gy, TH, TW)       -> dM (16, K, N*TH*TW)     dM = A dY A^T
    winograd_input_transform_adjoint(dV, N, H, W, PH, PW, TH, TW) -> dx (N, C, H, W)  dd = B dV B^T, tiles added
    winograd_filter_transform(w) -> U (16, K, C);  winograd_filter_transform_adjoint(dU) -> dw (K, C, 3, 3)

The adjoints make the backward pass the exact derivative of the forward one (dU[e] = dM[e] @ V[e]^T,
dV[e] = U[e]^T @ dM[e]).  Rounding: float32 results differ from the direct convolution's by a few ulps of the
inputs' scale (measured: ``kernels/README.md``); a non-finite input gives NaN in its tiles' outputs where the
direct convolution gives +-inf (inf - inf in the transforms).
"""
import numpy as np
from numba import njit, prange

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def tiles(OH, OW):
    """``(TH, TW)``: 2x2 output tiles covering an OH x OW output."""
    return -(-OH // 2), -(-OW // 2)


# -- NumPy reference ----------------------------------------------------------------------------------
def _padded(xp, x, PH, PW, TH, TW):
    """x with PH/PW zero rows/columns before and enough after for TH x TW tiles: (N, C, 2TH+2, 2TW+2)."""
    N, C, H, W = x.shape
    out = xp.zeros((N, C, 2 * TH + 2, 2 * TW + 2), x.dtype)
    h0, w0 = max(0, -PH), max(0, -PW)  # negative padding never happens for a 3x3 stride-1 layer, but be exact
    rows = min(H - h0, out.shape[2] - (PH + h0))
    cols = min(W - w0, out.shape[3] - (PW + w0))
    out[:, :, PH + h0:PH + h0 + rows, PW + w0:PW + w0 + cols] = x[:, :, h0:h0 + rows, w0:w0 + cols]
    return out


def _tile_view(xp, a, TH, TW):
    """The overlapping 4x4 tiles (stride 2) of a padded (N, C, 2TH+2, 2TW+2) array: (N, C, TH, TW, 4, 4);
    element (i, j) of tile (th, tw) is a[..., 2th + i, 2tw + j]."""
    parts = [a[:, :, i:i + 2 * TH:2, j:j + 2 * TW:2] for i in range(4) for j in range(4)]
    return xp.stack(parts, axis=-1).reshape(a.shape[:2] + (TH, TW, 4, 4))


def winograd_input_transform_numpy(x, PH, PW, TH, TW, *, xp=np):
    N, C = x.shape[:2]
    d = _tile_view(xp, _padded(xp, x, PH, PW, TH, TW), TH, TW)
    bt = xp.asarray(BT, x.dtype)
    V = xp.einsum("ai,nctuij,bj->abcntu", bt, d, bt, optimize=True)  # B^T d B for every tile
    return xp.ascontiguousarray(V).reshape(16, C, N * TH * TW)


def winograd_output_transform_numpy(M, N, OH, OW, *, xp=np):
    K = M.shape[1]
    TH, TW = tiles(OH, OW)
    at = xp.asarray(AT, M.dtype)
    Y = xp.einsum("ai,ijkntu,bj->nktaub", at, M.reshape(4, 4, K, N, TH, TW), at, optimize=True)  # A^T M A
    return xp.ascontiguousarray(Y.reshape(N, K, 2 * TH, 2 * TW)[:, :, :OH, :OW])


def winograd_output_transform_adjoint_numpy(gy, TH, TW, *, xp=np):
    N, K, OH, OW = gy.shape
    g = xp.zeros((N, K, 2 * TH, 2 * TW), gy.dtype)  # the outputs that tiles compute past OH/OW get no gradient
    g[:, :, :OH, :OW] = gy
    at = xp.asarray(AT, gy.dtype)
    dM = xp.einsum("ai,nktaub,bj->ijkntu", at, g.reshape(N, K, TH, 2, TW, 2), at, optimize=True)  # A dY A^T
    return xp.ascontiguousarray(dM).reshape(16, K, N * TH * TW)


def winograd_input_transform_adjoint_numpy(dV, N, H, W, PH, PW, TH, TW, *, xp=np):
    C = dV.shape[1]
    bt = xp.asarray(BT, dV.dtype)
    dd = xp.einsum("ai,abcntu,bj->nctuij", bt, dV.reshape(4, 4, C, N, TH, TW), bt, optimize=True)  # B dV B^T
    dpad = xp.zeros((N, C, 2 * TH + 2, 2 * TW + 2), dV.dtype)
    for i in range(4):  # the tiles overlap: each padded element adds the gradient of its copies
        for j in range(4):
            dpad[:, :, i:i + 2 * TH:2, j:j + 2 * TW:2] += dd[..., i, j]
    dx = xp.zeros((N, C, H, W), dV.dtype)
    rows, cols = min(H, dpad.shape[2] - PH), min(W, dpad.shape[3] - PW)
    dx[:, :, :rows, :cols] = dpad[:, :, PH:PH + rows, PW:PW + cols]
    return dx


def winograd_filter_transform(w, xp=np):
    """U = G g G^T per (k, c): (16, K, C), contiguous per position (small: every device uses this one)."""
    K, C = w.shape[:2]
    g = xp.asarray(G, w.dtype)
    return xp.ascontiguousarray(xp.einsum("ai,kcij,bj->abkc", g, w, g, optimize=True)).reshape(16, K, C)


def winograd_filter_transform_adjoint(dU, xp=np):
    """dw = G^T dU G per (k, c): (K, C, 3, 3)."""
    K, C = dU.shape[1:]
    g = xp.asarray(G, dU.dtype)
    return xp.ascontiguousarray(xp.einsum("ai,abkc,bj->kcij", g, dU.reshape(4, 4, K, C), g, optimize=True))


# -- Numba CPU: one (image, channel) plane per iteration, the matrix products written as additions ---------
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


@njit(parallel=True, cache=True)
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
def _interleave_index(OH, OW, TH, TW):
    """For each element (h, w) of an (OH, OW) plane, its place in four parity planes (4, TH*TW) flattened:
    plane 2p + q, tile th*TW + tw, where h = 2th + p, w = 2tw + q (unsigned: no negative-index test)."""
    TT = TH * TW
    src = np.empty(OH * OW, np.uint32)
    for h in range(OH):
        for w in range(OW):
            src[h * OW + w] = (2 * (h % 2) + w % 2) * TT + (h // 2) * TW + w // 2
    return src


@njit(parallel=True, cache=True)
def _output_transform(M, y, TH, TW):
    """Per (image, output channel) plane, as ``_input_transform`` in reverse: A^T M A as vector loops over all
    the plane's tiles, into four parity planes, y[2th + p, 2tw + q] = Y[2p + q, th*TW + tw]; then a gather puts
    them in place (cropped to OH x OW).  Rows of A^T M, then along them: tile by tile's additions and bits."""
    N, K, OH, OW = y.shape
    TT = TH * TW
    src = _interleave_index(OH, OW, TH, TW)
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
def _deinterleave_index(OH, OW, TH, TW):
    """The reverse: for each place of the parity planes G[2p + q, th*TW + tw] = gy[2th + p, 2tw + q], its flat
    index into an (OH, OW) plane (0 past OH or OW), and the list of those past the edge (they get zeros)."""
    TT = TH * TW
    src = np.zeros(4 * TT, np.uint32)
    pad = np.zeros(4 * TT, np.bool_)
    for p in range(2):
        for q in range(2):
            for th in range(TH):
                for tw in range(TW):
                    h, w = 2 * th + p, 2 * tw + q
                    i = (2 * p + q) * TT + th * TW + tw
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


@njit(parallel=True, cache=True)
def _output_transform_adjoint(gy, dM, TH, TW):
    """Per plane: dY's four parity planes (zero past OH and OW) gathered, then A dY A^T row by row of the tile,
    each row's four outputs a vector loop over all the plane's tiles (tile by tile's additions and bits)."""
    N, K, OH, OW = gy.shape
    TT = TH * TW
    src, pads = _deinterleave_index(OH, OW, TH, TW)
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


@njit(parallel=True, cache=True)
def _input_transform_adjoint(dV, dx, PH, PW, TH, TW):
    N, C, H, W = dx.shape
    Wp = 2 * TW + 2
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        dpad = np.zeros((2 * TH + 2, Wp), dV.dtype)  # the gradient of the zero-padded plane
        r = np.empty((4, Wp), dV.dtype)
        for th in range(TH):
            r[:] = 0
            t0 = (n * TH + th) * TW
            for a in range(4):  # the row step's adjoint (B along each row), tiles overlapping by two columns
                for tw in range(TW):
                    t = t0 + tw
                    s0, s1, s2, s3 = _b4(dV[4 * a, c, t], dV[4 * a + 1, c, t], dV[4 * a + 2, c, t],
                                         dV[4 * a + 3, c, t])
                    j = 2 * tw
                    r[a, j] += s0
                    r[a, j + 1] += s1
                    r[a, j + 2] += s2
                    r[a, j + 3] += s3
            for j in range(Wp):  # then the column step's adjoint (B down each column), shared by the row's tiles
                d0, d1, d2, d3 = _b4(r[0, j], r[1, j], r[2, j], r[3, j])
                h = 2 * th
                dpad[h, j] += d0
                dpad[h + 1, j] += d1
                dpad[h + 2, j] += d2
                dpad[h + 3, j] += d3
        for h in range(H):  # the interior: x's own elements (the padding's gradient is dropped)
            for w in range(W):
                hp, wp = h + PH, w + PW
                dx[n, c, h, w] = dpad[hp, wp] if hp < dpad.shape[0] and wp < Wp else 0


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
