"""Matrix products of the fully connected layer and of ``matmul``, with the BLAS thread policy on the CPU.

Shapes: x (*, in) (leading axes flattened to B rows for the gradients), w (out, in) (PyTorch's layout),
b (out,) or None, y (*, out).

    linear_forward(x, w, b) -> y = x @ w^T + b
    linear_backward(gy, x, w) -> (gx, gw):  gx = gy @ w  (B, out) @ (out, in);  gw = gy^T @ x  (out, B) @ (B, in)
    matmul(a, b) -> a @ b   (NumPy's rules: 1-D vectors, stacks of matrices broadcast)

``_numpy``: the products as written, which CuPy evaluates as well (no ``_cuda``: cuBLAS is already the fast
path).  ``_cpu``: the same products, a small one held to one BLAS thread (``threads.gemm``: a thread pool's
fork and join costs more than it saves there).  ``_shape`` (``tinyconv.summary``): the products are cheap on
one image, so they run, and their multiply-accumulates are counted.
"""
import numpy as np

from . import threads


def linear_forward_numpy(x, w, b):
    y = x @ w.T
    return y if b is None else y + b


def linear_backward_numpy(gy, x, w):
    x2, gy2 = x.reshape(-1, x.shape[-1]), gy.reshape(-1, gy.shape[-1])
    return gy @ w, gy2.T @ x2


def linear_forward_cpu(x, w, b):
    with threads.gemm(x.size * w.shape[0]):
        y = x @ w.T
    return y if b is None else y + b


def linear_backward_cpu(gy, x, w):
    with threads.gemm(x.size * w.shape[0]):
        return linear_backward_numpy(gy, x, w)


def matmul_numpy(a, b):
    return a @ b


def linear_forward_shape(x, w, b, *, xp=np):
    y = linear_forward_numpy(x, w, b)
    return y.size * w.shape[1], y


def matmul_shape(a, b, *, xp=np):
    y = a @ b
    return y.size * a.shape[-1], y
