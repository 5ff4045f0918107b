"""Matrix products of the fully connected layer and of ``matmul``, with the BLAS thread policy on the CPU.

Shapes: x (*, in) (leading axes flattened to B rows for the gradients), w (out, in) (PyTorch's layout),
b (out,) or None, y (*, out).

    linear_forward(x, w, b) -> y = x @ w^T + b
    linear_backward(gy, x, w) -> (gx, gw):  gx = gy @ w  (B, out) @ (out, in);  gw = gy^T @ x  (out, B) @ (B, in)
    matmul(a, b) -> a @ b   (NumPy's rules: 1-D vectors, stacks of matrices broadcast)

``_numpy``: the products as written, which CuPy evaluates as well (no ``_cuda``: cuBLAS is already the fast
path).  ``_cpu``: the same products, a small one held to one BLAS thread (``threads.gemm``: a thread pool's
fork and join costs more than it saves there).

Leading axes are flattened before the product, in both, so that it is one GEMM of B rows: NumPy's ``@`` on
an (N, H, W, in) array and a matrix is a stack of N*H products of W rows each, one BLAS call apiece.  In
ConvNeXt's blocks (Linear over channels-last (16, 16, 16, 96) at 64x64) that stack ran 4-13x slower than
the one product (measured, 2 threads: 8.7 ms against 1.9 forward, 36 against 2.7 for (16, 2, 2, 3072)).
``matmul`` does the same for a stack times one matrix.  The bias is then added in place: no second
output-sized array.  ``_shape`` (``tinyconv.summary``): the products are cheap on one image, so they run, and
their multiply-accumulates are counted.
"""
import math

import numpy as np

from . import threads


def _rows(a):
    """(*, n) -> (B, n): the leading axes as one axis of rows (a view where the layout allows)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _add_bias(y, b):
    """y + b, in place unless b's dtype would promote y's (then NumPy's promotion, as ``y + b``)."""
    if b is None:
        return y
    if np.result_type(y.dtype, b.dtype) == y.dtype:
        y += b
        return y
    return y + b


def linear_forward_numpy(x, w, b):
    y = _add_bias(_rows(x) @ w.T, b)                    # (B, in) @ (in, out), + b
    return y.reshape(x.shape[:-1] + (w.shape[0],))


def linear_backward_numpy(gy, x, w):
    x2, gy2 = _rows(x), _rows(gy)
    return (gy2 @ w).reshape(x.shape), gy2.T @ x2       # dx = dy W;  dW = dy^T x


# A forward product of few rows and a large weight runs transposed, Y^T = W X^T, from this many weights and up
# to TRANSPOSED_MAX_ROWS rows.  Measured (one BLAS thread below 2**26 multiply-adds, two above; OpenBLAS
# 0.3.31, AVX-512), X W^T against (W X^T)^T in ms: 16 x 2048 -> 1024 2.58 vs 1.17, 16 x 1280 -> 1000 1.15 vs
# 0.75, 16 x 9216 -> 4096 27.3 vs 16.8, 64 x 4096 -> 4096 22.7 vs 17.6; 64 x 400 -> 120 0.12 vs 0.12,
# 256 x 1536 -> 384 1.72 vs 1.99, 4096 x 96 -> 384 1.8 vs 8.0.  The backward products showed no such gain.
TRANSPOSED_MIN_WEIGHTS = 1 << 20
TRANSPOSED_MAX_ROWS = 64


def linear_forward_cpu(x, w, b):
    x2 = _rows(x)
    with threads.gemm(x.size * w.shape[0]):
        if x2.shape[0] <= TRANSPOSED_MAX_ROWS and w.size >= TRANSPOSED_MIN_WEIGHTS:
            y = np.ascontiguousarray((w @ x2.T).T)          # (out, in) @ (in, B), then back to (B, out)
        else:
            y = x2 @ w.T
    y = _add_bias(y, b)
    return y.reshape(x.shape[:-1] + (w.shape[0],))


def linear_backward_cpu(gy, x, w):
    with threads.gemm(x.size * w.shape[0]):
        return linear_backward_numpy(gy, x, w)


def matmul_numpy(a, b):
    if a.ndim > 2 and b.ndim == 2:                      # a stack times one matrix: one product of all rows
        return (_rows(a) @ b).reshape(a.shape[:-1] + (b.shape[1],))
    return a @ b


def linear_forward_shape(x, w, b, *, xp=np):
    y = linear_forward_numpy(x, w, b)
    return y.size * w.shape[1], y


def matmul_shape(a, b, *, xp=np):
    y = a @ b
    return y.size * a.shape[-1], y
