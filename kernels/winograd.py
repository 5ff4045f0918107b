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

Kernels (``_numpy``: the matrix formulas with einsum over all tiles at once; ``_cpu``: Numba in
``winograd_cpu.py``, the same additions written out, parallel over the (image, channel) planes):

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

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def tiles(OH, OW):
    """``(TH, TW)``: 2x2 output tiles covering an OH x OW output."""
    return -(-OH // 2), -(-OW // 2)


# -- NumPy reference ----------------------------------------------------------------------------------
# Written once for F(m x m, 3x3) with tiles of a = m + 2: the transform matrices BT (a, a) and AT (m, a) say
# which (F(4x4, 3x3), ``winograd4.py``, calls these with its own).
def _padded(xp, x, PH, PW, TH, TW, m):
    """x with PH/PW zero rows/columns before and enough after for TH x TW tiles: (N, C, m*TH+2, m*TW+2)."""
    N, C, H, W = x.shape
    out = xp.zeros((N, C, m * TH + 2, m * TW + 2), x.dtype)
    h0, w0 = max(0, -PH), max(0, -PW)  # negative padding never happens for a 3x3 stride-1 layer, but be exact
    rows = max(0, min(H - h0, out.shape[2] - (PH + h0)))
    cols = max(0, min(W - w0, out.shape[3] - (PW + w0)))
    out[:, :, PH + h0:PH + h0 + rows, PW + w0:PW + w0 + cols] = x[:, :, h0:h0 + rows, w0:w0 + cols]
    return out


def _tile_view(xp, a, TH, TW, m):
    """The overlapping (m+2)x(m+2) tiles (stride m) of a padded (N, C, m*TH+2, m*TW+2) array:
    (N, C, TH, TW, m+2, m+2); element (i, j) of tile (th, tw) is a[..., m*th + i, m*tw + j]."""
    t = m + 2
    parts = [a[:, :, i:i + m * TH:m, j:j + m * TW:m] for i in range(t) for j in range(t)]
    return xp.stack(parts, axis=-1).reshape(a.shape[:2] + (TH, TW, t, t))


def input_transform_reference(BT, x, PH, PW, TH, TW, xp):
    """V = B^T d B for every tile: (a*a, C, N*TH*TW)."""
    N, C = x.shape[:2]
    t, m = BT.shape[0], BT.shape[0] - 2
    d = _tile_view(xp, _padded(xp, x, PH, PW, TH, TW, m), TH, TW, m)
    bt = xp.asarray(BT, x.dtype)
    V = xp.einsum("ai,nctuij,bj->abcntu", bt, d, bt, optimize=True)
    return xp.ascontiguousarray(V).reshape(t * t, C, N * TH * TW)


def output_transform_reference(AT, M, N, OH, OW, xp):
    """y = A^T M A per tile, cropped to (N, K, OH, OW)."""
    K = M.shape[1]
    m, t = AT.shape
    TH, TW = -(-OH // m), -(-OW // m)
    at = xp.asarray(AT, M.dtype)
    Y = xp.einsum("ai,ijkntu,bj->nktaub", at, M.reshape(t, t, K, N, TH, TW), at, optimize=True)
    return xp.ascontiguousarray(Y.reshape(N, K, m * TH, m * TW)[:, :, :OH, :OW])


def output_transform_adjoint_reference(AT, gy, TH, TW, xp):
    """dM = A dY A^T per tile: (a*a, K, N*TH*TW)."""
    N, K, OH, OW = gy.shape
    m, t = AT.shape
    g = xp.zeros((N, K, m * TH, m * TW), gy.dtype)  # the outputs that tiles compute past OH/OW get no gradient
    g[:, :, :OH, :OW] = gy
    at = xp.asarray(AT, gy.dtype)
    dM = xp.einsum("ai,nktaub,bj->ijkntu", at, g.reshape(N, K, TH, m, TW, m), at, optimize=True)
    return xp.ascontiguousarray(dM).reshape(t * t, K, N * TH * TW)


def input_transform_adjoint_reference(BT, dV, N, H, W, PH, PW, TH, TW, xp):
    """dd = B dV B^T per tile, the overlapping tiles added back into their places: dx (N, C, H, W)."""
    C = dV.shape[1]
    t, m = BT.shape[0], BT.shape[0] - 2
    bt = xp.asarray(BT, dV.dtype)
    dd = xp.einsum("ai,abcntu,bj->nctuij", bt, dV.reshape(t, t, C, N, TH, TW), bt, optimize=True)
    dpad = xp.zeros((N, C, m * TH + 2, m * TW + 2), dV.dtype)
    for i in range(t):  # the tiles overlap: each padded element adds the gradient of its copies
        for j in range(t):
            dpad[:, :, i:i + m * TH:m, j:j + m * TW:m] += dd[..., i, j]
    dx = xp.zeros((N, C, H, W), dV.dtype)
    rows, cols = max(0, min(H, dpad.shape[2] - PH)), max(0, min(W, dpad.shape[3] - PW))
    dx[:, :, :rows, :cols] = dpad[:, :, PH:PH + rows, PW:PW + cols]
    return dx


def winograd_input_transform_numpy(x, PH, PW, TH, TW, *, xp=np):
    return input_transform_reference(BT, x, PH, PW, TH, TW, xp)


def winograd_output_transform_numpy(M, N, OH, OW, *, xp=np):
    return output_transform_reference(AT, M, N, OH, OW, xp)


def winograd_output_transform_adjoint_numpy(gy, TH, TW, *, xp=np):
    return output_transform_adjoint_reference(AT, gy, TH, TW, xp)


def winograd_input_transform_adjoint_numpy(dV, N, H, W, PH, PW, TH, TW, *, xp=np):
    return input_transform_adjoint_reference(BT, dV, N, H, W, PH, PW, TH, TW, xp)


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
