"""The fully connected layer ``y = x W^T + b`` with PyTorch's weight layout ``(out_features, in_features)``.

Shapes: ``x`` is ``(*, in)`` (any leading axes, typically ``(N, in)``), ``W`` is ``(out, in)``, ``b`` is
``(out,)``, ``y`` is ``(*, out)``.  The leading axes are flattened to one batch axis of ``B`` rows for the
gradients, which are three matrix products:

    dx = dy W          (B, out) @ (out, in)
    dW = dy^T x        (out, B) @ (B, in)
    db = sum_rows dy
"""
from .. import backend
from ..core import Function
from ..threads import gemm


class Linear(Function):
    def forward(self, x, w, b):
        self.x, self.w = x, w
        with gemm(x.size * w.shape[0]):  # small products on one BLAS thread (threads.py)
            y = x @ w.T
        backend.count_macs(y.size * w.shape[1])  # for tinyconv.summary (a no-op outside shape_only)
        return y if b is None else y + b

    def backward(self, gy):
        x2 = self.x.reshape(-1, self.x.shape[-1])
        gy2 = gy.reshape(-1, gy.shape[-1])
        with gemm(self.x.size * self.w.shape[0]):
            # dx = dy W
            gx = gy @ self.w
            # dW = dy^T x  (summed over every leading position)
            gw = gy2.T @ x2
        # db = sum of dy over the rows
        gb = gy2.sum(axis=0)
        return gx, gw, gb


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` with ``weight`` ``(out_features, in_features)`` and ``bias`` ``(out_features,)``."""
    if weight.ndim != 2:
        raise ValueError(f"linear: expected weight of shape (out_features, in_features), got {weight.shape}")
    if input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: expected input with last dimension {weight.shape[1]} (in_features of weight "
                         f"{weight.shape}), got shape {input.shape}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"linear: expected bias of shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    return Linear.apply(input, weight, bias)
