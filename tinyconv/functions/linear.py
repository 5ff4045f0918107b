"""The fully connected layer ``y = x W^T + b`` with PyTorch's weight layout ``(out_features, in_features)``.

Shapes: ``x`` is ``(*, in)`` (any leading axes, typically ``(N, in)``), ``W`` is ``(out, in)``, ``b`` is
``(out,)``, ``y`` is ``(*, out)``.  The leading axes are flattened to one batch axis of ``B`` rows for the
gradients, which are three matrix products:

    dx = dy W          (B, out) @ (out, in)
    dW = dy^T x        (out, B) @ (B, in)
    db = sum_rows dy
"""
from ..backend import get_kernel
from ..core import Function


class Linear(Function):
    def forward(self, x, w, b):
        self.x, self.w = x, w  # saved for backward: dW needs x, dx needs W
        # y = x W^T + b  (kernels/linear.py: the product, a small one on one BLAS thread on the CPU)
        return get_kernel("linear_forward", x)(x, w, b)

    def backward(self, gy):
        # dx = dy W;  dW = dy^T x  (summed over every leading position)
        gx, gw = get_kernel("linear_backward", gy)(gy, self.x, self.w)
        # db = sum of dy over the rows
        gb = gy.reshape(-1, gy.shape[-1]).sum(axis=0)
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
