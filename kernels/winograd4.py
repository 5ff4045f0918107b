"""Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016): the tile transforms of a 3x3, stride-1
convolution with 4x4 output tiles, and their adjoints (for the two gradients).  The F(2x2, 3x3) twin, with the
same layouts and kernel signatures, is ``winograd.py``.

A 3x3 correlation producing a 4x4 output tile Y from a 6x6 input tile d (overlapping its neighbours by 2) is

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A        ((.): element-wise product of 6x6 matrices)

    B^T = | 4  0 -5  0  1  0 |    G = |  1/4     0     0  |    A^T = | 1  1  1  1  1  0 |
          | 0 -4 -4  1  1  0 |        | -1/6  -1/6  -1/6  |          | 0  1 -1  2 -2  0 |
          | 0  4 -4 -1  1  0 |        | -1/6   1/6  -1/6  |          | 0  1  1  4  4  0 |
          | 0 -2 -1  2  1  0 |        | 1/24  1/12   1/6  |          | 0  1 -1  8 -8  1 |
          | 0  2 -1 -2  1  0 |        | 1/24 -1/12   1/6  |
          | 0  4  0 -5  0  1 |        |   0     0     1   |

Derivation (modified Toom-Cook, one dimension; Lavin & Gray sec. 4): a 3-tap correlation of 4 outputs is the
transpose of the linear convolution of a 4-long and a 3-long polynomial, whose product has degree 5: six
coefficients, fixed by its values at the five finite points p = 0, 1, -1, 2, -2 and at infinity (the leading
coefficient).  G's row i evaluates the filter g(s) = g0 + g1 s + g2 s^2 at p_i (infinity: g2) and divides by
N_i = prod_{j != i} (p_i - p_j) over the finite points (4, -6, -6, 24, 24; 1 for infinity); B^T's row i holds
the coefficients of s^0..s^5 of prod_{j != i} (s - p_j) (infinity: the product over all five), so that row i of
B^T divided by N_i is the Lagrange basis polynomial; A^T's column i holds p_i^0..p_i^3 (infinity: picks the
top coefficient of the output, row 3).  36 multiplications per tile and channel pair instead of 144 (4x;
F(2x2, 3x3): 2.25x), at the price of larger constants, so float32 rounding grows (``kernels/README.md``).

Shapes as F(2x2, 3x3)'s with 36 positions: tiles TH = ceil(OH/4) by TW = ceil(OW/4); tile
t = (n*TH + th)*TW + tw covers output rows 4th .. 4th + 3 and reads input rows 4th - PH .. 4th - PH + 5 (zero
outside x).  V (36, C, N*TH*TW), M (36, K, N*TH*TW), U (36, K, C), position e = 6a + b.

    winograd4_input_transform(x, PH, PW, TH, TW)         -> V  (36, C, N*TH*TW)     V = B^T d B
    winograd4_output_transform(M, N, OH, OW)             -> y  (N, K, OH, OW)       y = A^T M A
    winograd4_output_transform_adjoint(gy, TH, TW)       -> dM (36, K, N*TH*TW)     dM = A dY A^T
    winograd4_input_transform_adjoint(dV, N, H, W, PH, PW, TH, TW) -> dx (N, C, H, W)  B dV B^T, tiles added
    winograd4_filter_transform(w) -> U (36, K, C);  winograd4_filter_transform_adjoint(dU) -> dw (K, C, 3, 3)

``_numpy``: ``winograd.py``'s reference (einsum over all tiles, any tile size) with these matrices;
``_cpu``: Numba in ``winograd4_cpu.py``.
"""
import numpy as np

from .winograd import (input_transform_adjoint_reference, input_transform_reference,
                       output_transform_adjoint_reference, output_transform_reference)

BT4 = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], np.float64)
G4 = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]], np.float64)
AT4 = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], np.float64)


def tiles4(OH, OW):
    """``(TH, TW)``: 4x4 output tiles covering an OH x OW output."""
    return -(-OH // 4), -(-OW // 4)


# -- NumPy reference: winograd.py's, written for any tile size, with these matrices ----------------------
def winograd4_input_transform_numpy(x, PH, PW, TH, TW, *, xp=np):
    return input_transform_reference(BT4, x, PH, PW, TH, TW, xp)


def winograd4_output_transform_numpy(M, N, OH, OW, *, xp=np):
    return output_transform_reference(AT4, M, N, OH, OW, xp)


def winograd4_output_transform_adjoint_numpy(gy, TH, TW, *, xp=np):
    return output_transform_adjoint_reference(AT4, gy, TH, TW, xp)


def winograd4_input_transform_adjoint_numpy(dV, N, H, W, PH, PW, TH, TW, *, xp=np):
    return input_transform_adjoint_reference(BT4, dV, N, H, W, PH, PW, TH, TW, xp)


# (G (x) G)[6a + b, 3i + j] = G[a, i] G[b, j]: G g G^T of all K*C filters as one (36, 9) @ (9, K*C) product,
# written straight in U's layout (an einsum's transposes of the 36*K*C values cost 4x more at 256 channels)
GG4 = np.kron(G4, G4)


def winograd4_filter_transform(w, xp=np):
    """U = G g G^T per (k, c): (36, K, C), contiguous per position (small: every device uses this one)."""
    K, C = w.shape[:2]
    gg = xp.asarray(GG4, w.dtype)
    return xp.matmul(gg, xp.ascontiguousarray(w).reshape(K * C, 9).T).reshape(36, K, C)


def winograd4_filter_transform_adjoint(dU, xp=np):
    """dw = G^T dU G per (k, c): (K, C, 3, 3)."""
    K, C = dU.shape[1:]
    gg = xp.asarray(GG4, dU.dtype)
    return xp.matmul(xp.ascontiguousarray(dU).reshape(36, K * C).T, gg).reshape(K, C, 3, 3)
