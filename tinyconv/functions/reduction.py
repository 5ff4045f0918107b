"""Reductions over axes: sum, mean, variance, max and min, with their gradients.

Axes follow NumPy and PyTorch alike: ``axis`` or ``dim`` (an int, a tuple, or None for all axes; negative
counts from the end), ``keepdims`` or ``keepdim``.  The gradient of a reduction is the output gradient
broadcast back over the reduced axes: as is for a sum, divided by n for a mean, masked to the extrema for
max and min.
"""
import builtins

import numpy as np

from ..backend import get_array_module, is_array as backend_is_array, scatter_add
from ..core import Function, Tensor, as_tensor
from .basic import _floating, maximum, minimum


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


class ValuesIndices(tuple):
    """The ``(values, indices)`` pair of ``max``/``min``/``topk``/``sort`` along a dim (``torch.return_types``).

    Unpacks as a tuple (``v, i = x.max(dim=1)``) and names its fields (``.values``, ``.indices``).
    """

    __slots__ = ()

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])

    def __repr__(self):
        return f"return_types(\nvalues={self[0]!r},\nindices={self[1]!r})"


class TakeAlongDim(Function):
    """``x`` at ``indices`` along ``axis`` (``np.take_along_axis``, ``torch.gather``)."""

    def forward(self, x):
        self.x_shape = x.shape
        return get_array_module(x).take_along_axis(x, self.indices, axis=self.axis)

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        # dy_j/dx_i = 1 where i is the index picked for output j: scatter-add gy back (an index may repeat)
        grid = list(xp.ogrid[tuple(slice(n) for n in self.indices.shape)])
        grid[self.axis] = self.indices
        scatter_add(gx, tuple(grid), gy)
        return gx


def _extremum(x, axis, keepdims, dim, keepdim, other, is_max):
    if other is None and (isinstance(axis, Tensor) or backend_is_array(axis)):
        other, axis = axis, None  # torch.max(input, other)
    if other is not None:  # the elementwise extremum of two tensors
        return (maximum if is_max else minimum)(x, other)
    x = as_tensor(x)
    axis = _axes(axis, dim)
    keep = bool(keepdim or keepdims)
    if axis is None:  # over all elements: the value only; tied extrema share the gradient (torch.amax)
        return MaxMin.apply(x, axis=None, keepdims=keep, is_max=is_max)
    if isinstance(axis, (tuple, list)):
        raise TypeError(f"{'max' if is_max else 'min'}(dim={axis}): a single dim returns (values, indices); "
                        f"for several dims use {'amax' if is_max else 'amin'}(x, dim={tuple(axis)})")
    (a,) = _norm_axis(axis, x.ndim)
    xp = get_array_module(x.data)
    idx = (xp.argmax if is_max else xp.argmin)(x.data, axis=a, keepdims=True) if x.ndim else xp.zeros((), np.int64)
    values = TakeAlongDim.apply(x, indices=idx, axis=a) if x.ndim else x.clone()
    if not keep and x.ndim:
        values, idx = values.squeeze(a), idx.squeeze(a)
    return ValuesIndices(values, Tensor(idx.astype(np.int64)))


def max(x, axis=None, keepdims=False, dim=None, keepdim=None, other=None):
    """Maximum, as ``torch.max``: over all elements a tensor; along ``dim`` (alias ``axis``) the named pair
    ``(values, indices)`` (``v, i = x.max(dim=1)``); with a tensor ``other``, the elementwise maximum.

    Along a dim the gradient goes to the index returned (the first maximum), as in PyTorch; over all elements
    tied maxima share it equally.  ``amax`` reduces several dims and returns values only.
    """
    return _extremum(x, axis, keepdims, dim, keepdim, other, is_max=True)


def min(x, axis=None, keepdims=False, dim=None, keepdim=None, other=None):
    """Minimum, as ``torch.min``: a tensor over all elements, ``(values, indices)`` along ``dim``."""
    return _extremum(x, axis, keepdims, dim, keepdim, other, is_max=False)


def amax(x, dim=None, keepdim=False, axis=None, keepdims=False):
    """Maximum over ``dim`` (an int, a tuple, or None for all), values only; tied maxima share the gradient."""
    return MaxMin.apply(as_tensor(x), axis=_axes(axis, dim), keepdims=bool(keepdim or keepdims), is_max=True)


def amin(x, dim=None, keepdim=False, axis=None, keepdims=False):
    """Minimum over ``dim`` (an int, a tuple, or None for all), values only; tied minima share the gradient."""
    return MaxMin.apply(as_tensor(x), axis=_axes(axis, dim), keepdims=bool(keepdim or keepdims), is_max=False)


def argmax(x, dim=None, keepdim=False, axis=None, keepdims=False):
    """Index of the maximum along ``dim`` (of the flattened tensor when None), as an int64 tensor."""
    return _arg(x, dim if dim is not None else axis, keepdim or keepdims, is_max=True)


def argmin(x, dim=None, keepdim=False, axis=None, keepdims=False):
    """Index of the minimum along ``dim`` (of the flattened tensor when None), as an int64 tensor."""
    return _arg(x, dim if dim is not None else axis, keepdim or keepdims, is_max=False)


def _arg(x, dim, keepdim, is_max):
    x = as_tensor(x)
    xp = get_array_module(x.data)
    fn = xp.argmax if is_max else xp.argmin
    if dim is None:
        out = fn(x.data.reshape(-1))
        return Tensor(xp.asarray(out).astype(np.int64).reshape((1,) * x.ndim if keepdim else ()))
    return Tensor(fn(x.data, axis=dim, keepdims=bool(keepdim)).astype(np.int64))
