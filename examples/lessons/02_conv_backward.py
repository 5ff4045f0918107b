"""Lesson 2: convolution's forward and backward as im2col, one matrix product and col2im, next to loops.

    python examples/lessons/02_conv_backward.py [--quick] [--out DIR]

For ``y = conv2d(x, W, b)`` with x (N, C, H, W), W (K, C, KH, KW):
``col = im2col(x)`` (C*KH*KW, N*OH*OW), ``Y = W_mat @ col + b``;  backward: ``dW = dY @ col.T``,
``db = dY summed``, ``dcol = W_mat.T @ dY``, ``dx = col2im(dcol)`` (every patch's gradient added back
where the patch came from).  Each is checked against naive loops, against tinyconv's ``conv2d`` and its
``backward``, and with ``gradcheck``.  Writes a picture of im2col's matrix for one small image.
"""
# %%
import numpy as np

from _common import parse_args, saved

import tinyconv as tc
from tinyconv import functional as F
from tinyconv.viz import _plot

args = parse_args(__doc__)
rng = np.random.default_rng(args.seed)
N, C, H, W, K, KH, KW, S, P = (2, 2, 5, 5, 3, 3, 3, 1, 1) if args.quick else (4, 3, 9, 9, 5, 3, 3, 2, 1)
OH, OW = (H + 2 * P - KH) // S + 1, (W + 2 * P - KW) // S + 1
x = rng.standard_normal((N, C, H, W))
w = rng.standard_normal((K, C, KH, KW))
b = rng.standard_normal(K)
dy = rng.standard_normal((N, K, OH, OW))

# %% Naive loops: the definition.
xp = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
y_loop = np.zeros((N, K, OH, OW))
dw_loop, dxp_loop = np.zeros_like(w), np.zeros_like(xp)
for n in range(N):
    for k in range(K):
        for i in range(OH):
            for j in range(OW):
                patch = xp[n, :, i * S:i * S + KH, j * S:j * S + KW]
                y_loop[n, k, i, j] = (patch * w[k]).sum() + b[k]
                dw_loop[k] += dy[n, k, i, j] * patch                                    # dW += dy * patch
                dxp_loop[n, :, i * S:i * S + KH, j * S:j * S + KW] += dy[n, k, i, j] * w[k]  # dx += dy * W
dx_loop = dxp_loop[:, :, P:P + H, P:P + W]


# %% im2col: each output position's patch becomes one column.
def im2col(x):
    xp = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
    col = np.empty((C, KH, KW, N, OH, OW))
    for u in range(KH):
        for v in range(KW):
            col[:, u, v] = xp[:, :, u:u + S * OH:S, v:v + S * OW:S].transpose(1, 0, 2, 3)
    return col.reshape(C * KH * KW, N * OH * OW)


def col2im(col):
    """The adjoint of im2col: every column's entries added back to the pixels they were copied from."""
    col = col.reshape(C, KH, KW, N, OH, OW)
    xp = np.zeros((N, C, H + 2 * P, W + 2 * P))
    for u in range(KH):
        for v in range(KW):
            xp[:, :, u:u + S * OH:S, v:v + S * OW:S] += col[:, u, v].transpose(1, 0, 2, 3)
    return xp[:, :, P:P + H, P:P + W]


col = im2col(x)
w_mat = w.reshape(K, -1)
y_gemm = (w_mat @ col + b[:, None]).reshape(K, N, OH, OW).transpose(1, 0, 2, 3)    # Y = W @ col + b
dy_mat = dy.transpose(1, 0, 2, 3).reshape(K, -1)
dw_gemm = (dy_mat @ col.T).reshape(w.shape)                                       # dW = dY @ col.T
db_gemm = dy_mat.sum(axis=1)                                                      # db = sum of dY
dx_gemm = col2im(w_mat.T @ dy_mat)                                                # dx = col2im(W.T @ dY)
print(f"im2col: x {x.shape} -> col {col.shape}; W {w.shape} -> W_mat {w_mat.shape}")
for name, a, ref in [("y", y_gemm, y_loop), ("dW", dw_gemm, dw_loop), ("dx", dx_gemm, dx_loop),
                     ("db", db_gemm, dy.sum(axis=(0, 2, 3)))]:
    err = np.abs(a - ref).max()
    print(f"  {name:2s}: im2col/GEMM vs loops, max |diff| = {err:.2e}")
    assert err < 1e-10

# %% tinyconv's conv2d and its backward give the same numbers, and gradcheck agrees.
xt, wt, bt = (tc.tensor(a, dtype=tc.float64, requires_grad=True) for a in (x, w, b))
yt = F.conv2d(xt, wt, bt, stride=S, padding=P)
(yt * tc.tensor(dy, dtype=tc.float64)).sum().backward()
for name, a, ref in [("y", yt.numpy(), y_loop), ("dW", wt.grad.numpy(), dw_loop), ("dx", xt.grad.numpy(), dx_loop),
                     ("db", bt.grad.numpy(), db_gemm)]:
    err = np.abs(a - ref).max()
    print(f"  {name:2s}: tinyconv vs loops, max |diff| = {err:.2e}")
    assert err < 1e-10
small = [tc.tensor(a[:1, :1] if a.ndim == 4 and a is x else a[:, :1] if a.ndim == 4 else a, dtype=tc.float64,
                   requires_grad=True) for a in (x, w, b)]
print("gradcheck of conv2d:", tc.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=S, padding=P), small))

# %% A picture of the matrices: col (one column per output position), W_mat, and Y = W_mat @ col.
fig = _plot.figure((11, 3.6))
axes = fig.subplots(1, 3, width_ratios=[col.shape[1], col.shape[1] * 0.35, col.shape[1]])
for ax, m, t in zip(axes, [col, w_mat, w_mat @ col],
                    [f"col = im2col(x)  {col.shape}", f"W_mat {w_mat.shape}", f"W_mat @ col  {(K, col.shape[1])}"]):
    lim = float(np.abs(m).max())  # each matrix on its own symmetric scale: red > 0 > blue
    ax.imshow(m, cmap="RdBu_r", aspect="auto", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_title(t, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"convolution as one matrix product (N={N}, C={C}, {H}x{W}, K={K}, {KH}x{KW}, stride {S}, pad {P})")
saved(_plot.save(fig, f"{args.out}/im2col.png"))
