"""Reductions over axes: sum, mean, variance, max and min, with their gradients.

Axes follow NumPy and PyTorch alike: ``axis`` or ``dim`` (an int, a tuple, or None for all axes; negative
counts from the end), ``keepdims`` or ``keepdim``.  The gradient of a reduction is the output gradient
broadcast back over the reduced axes: as is for a sum, divided by n for a mean, masked to the extrema for
max and min.
"""
import builtins

import numpy as np

from ..backend import get_array_module
from ..core import Function, as_tensor
from .basic import _floating


def _norm_axis(axis, ndim):
    """``axis`` (None, an int or a sequence; negative counts from the end) as a sorted tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    n = builtins.max(ndim, 1)  # a 0-d tensor accepts axis 0 or -1, as PyTorch
    for a in axes:
        if not -n <= a < n:
            raise ValueError(f"axis {a} is out of range for a tensor of {ndim} dimensions")
    out = sorted({a % n for a in axes})
    if len(out) != len(axes):
        raise ValueError(f"axis {axis} repeats an axis")
    return tuple(out) if ndim else ()


def _axes(axis, dim):
    return dim if dim is not None else axis


class Sum(Function):
    def forward(self, x):
        self.x_shape = x.shape
        self.axes = _norm_axis(self.axis, x.ndim)
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        xp = get_array_module(gy)
        # d(sum x)/dx = 1 for every summed element: broadcast gy back
        if not self.keepdims:
            gy = gy.reshape([1 if i in self.axes else n for i, n in enumerate(self.x_shape)])
        return xp.broadcast_to(gy, self.x_shape).copy()


def sum(x, axis=None, keepdims=False, dim=None, keepdim=None):
    """Sum over ``axis`` (alias ``dim``; an int, a tuple, or None for all); ``keepdims`` alias ``keepdim``."""
    return Sum.apply(as_tensor(x), axis=_axes(axis, dim), keepdims=bool(keepdim or keepdims))


def mean(x, axis=None, keepdims=False, dim=None, keepdim=None):
    """Arithmetic mean over ``axis`` (alias ``dim``): ``sum(x) / n``."""
    x = _floating(x)
    axes = _norm_axis(_axes(axis, dim), x.ndim)
    count = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    return sum(x, axes, keepdim or keepdims) / count


def var(x, axis=None, keepdims=False, dim=None, unbiased=None, correction=None, keepdim=None):
    """Variance over ``axis`` (alias ``dim``): ``sum((x - mean)^2) / (n - correction)``.

    As ``torch.var``, the default is the unbiased estimate (``correction=1``); ``unbiased=False`` or
    ``correction=0`` gives the biased one (NumPy's default, and what batch normalisation divides by).
    """
    x = _floating(x)
    axes = _norm_axis(_axes(axis, dim), x.ndim)
    count = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    ddof = correction if correction is not None else (1 if unbiased is None else int(unbiased))
    d = x - mean(x, axes, keepdims=True)
    return sum(d * d, axes, keepdim or keepdims) / (count - ddof)


class MaxMin(Function):
    """max or min over axes; the gradient is split equally among tied extrema."""

    def forward(self, x):
        self.axes = _norm_axis(self.axis, x.ndim)
        y = (x.max if self.is_max else x.min)(axis=self.axes, keepdims=True)
        self.mask = x == y
        self.x_shape = x.shape
        return y if self.keepdims else y.reshape([n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, gy):
        shape = [1 if i in self.axes else n for i, n in enumerate(self.x_shape)]
        count = self.mask.sum(axis=self.axes, keepdims=True)
        # dy/dx_i = 1/count for each x_i equal to the extremum, 0 otherwise
        return gy.reshape(shape) * self.mask / count.astype(gy.dtype)


def max(x, axis=None, keepdims=False, dim=None, keepdim=None):
    """Maximum over ``axis`` (alias ``dim``); tied maxima share the gradient equally.

    Returns the values only (NumPy's ``max``), not PyTorch's ``(values, indices)`` pair; use ``argmax``.
    """
    return MaxMin.apply(as_tensor(x), axis=_axes(axis, dim), keepdims=bool(keepdim or keepdims), is_max=True)


def min(x, axis=None, keepdims=False, dim=None, keepdim=None):
    """Minimum over ``axis`` (alias ``dim``); tied minima share the gradient equally."""
    return MaxMin.apply(as_tensor(x), axis=_axes(axis, dim), keepdims=bool(keepdim or keepdims), is_max=False)


amax, amin = max, min  # PyTorch's names for the reductions that return values only
