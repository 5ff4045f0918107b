"""Elementwise arithmetic, matrix product and reductions, with their gradients.

Broadcasting: a binary op's inputs may broadcast against each other (NumPy rules); the gradient of each
input is summed back over the broadcast axes (``unbroadcast``), so it always has the input's shape.
Shape-only operations (reshape, transpose, indexing, concatenation) live in ``shape.py``.
"""
import builtins

import numpy as np

from ..backend import get_array_module
from ..core import Function, Tensor


def unbroadcast(g, shape):
    """Sum gradient ``g`` over the axes along which an input of ``shape`` was broadcast."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and g.shape[i + extra] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _broadcast_check(op, a, b):
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"operator {op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast "
                         "together") from None


class _Binary(Function):
    symbol = "?"

    def forward(self, a, b):
        _broadcast_check(self.symbol, a, b)
        self.a_shape, self.b_shape = a.shape, b.shape
        return self.compute(a, b)


class Add(_Binary):
    symbol = "+"

    def compute(self, a, b):
        return a + b

    def backward(self, gy):
        # d(a+b)/da = d(a+b)/db = 1
        return unbroadcast(gy, self.a_shape), unbroadcast(gy, self.b_shape)


class Sub(_Binary):
    symbol = "-"

    def compute(self, a, b):
        return a - b

    def backward(self, gy):
        # d(a-b)/da = 1, d(a-b)/db = -1
        return unbroadcast(gy, self.a_shape), unbroadcast(-gy, self.b_shape)


class Mul(_Binary):
    symbol = "*"

    def compute(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        # d(ab)/da = b, d(ab)/db = a
        return unbroadcast(gy * self.b, self.a_shape), unbroadcast(gy * self.a, self.b_shape)


class Div(_Binary):
    symbol = "/"

    def compute(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        ga = gy / self.b
        return unbroadcast(ga, self.a_shape), unbroadcast(-ga * self.a / self.b, self.b_shape)


class Pow(_Binary):
    symbol = "**"

    def compute(self, a, b):
        self.a, self.b = a, b
        self.y = a ** b
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        # d(a^b)/da = b a^(b-1)
        ga = gy * self.b * self.a ** (self.b - 1)
        # d(a^b)/db = a^b log a   (defined for a > 0; 0 where a == 0 and the term vanishes)
        log_a = xp.log(xp.where(self.a > 0, self.a, 1))
        gb = gy * self.y * log_a
        return unbroadcast(ga, self.a_shape), unbroadcast(gb, self.b_shape)


class Maximum(_Binary):
    symbol = "maximum"

    def compute(self, a, b):
        self.a_wins = a >= b
        return get_array_module(a).maximum(a, b)

    def backward(self, gy):
        # the gradient flows to the larger input (to ``a`` on ties, as a subgradient)
        return (unbroadcast(gy * self.a_wins, self.a_shape),
                unbroadcast(gy * ~self.a_wins, self.b_shape))


class MatMul(Function):
    """``a @ b`` with NumPy's matmul semantics (1-D vectors, batched stacks with broadcasting)."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("operator @: both operands must have at least one dimension")
        k_a, k_b = a.shape[-1], (b.shape[0] if b.ndim == 1 else b.shape[-2])
        if k_a != k_b:
            raise ValueError(f"operator @: shapes {tuple(a.shape)} and {tuple(b.shape)} are not aligned "
                             f"({k_a} != {k_b})")
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        xp = get_array_module(gy)
        a = self.a[None, :] if self.a.ndim == 1 else self.a
        b = self.b[:, None] if self.b.ndim == 1 else self.b
        if self.a.ndim == 1:
            gy = xp.expand_dims(gy, -2)
        if self.b.ndim == 1:
            gy = xp.expand_dims(gy, -1)
        # dA = dY @ B^T, dB = A^T @ dY  (summed over broadcast batch axes)
        ga = unbroadcast(gy @ xp.swapaxes(b, -1, -2), a.shape).reshape(self.a.shape)
        gb = unbroadcast(xp.swapaxes(a, -1, -2) @ gy, b.shape).reshape(self.b.shape)
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Exp(Function):
    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        # d exp(x) = exp(x)
        return gy * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, gy):
        # d log(x) = 1/x
        return gy / self.x


class Sqrt(Function):
    def forward(self, x):
        self.y = get_array_module(x).sqrt(x)
        return self.y

    def backward(self, gy):
        # d sqrt(x) = 1 / (2 sqrt(x))
        return gy / (2 * self.y)


class Abs(Function):
    def forward(self, x):
        self.sign = get_array_module(x).sign(x)
        return abs(x)

    def backward(self, gy):
        # d|x| = sign(x)  (0 at 0)
        return gy * self.sign


class Clip(Function):
    def forward(self, x):
        xp = get_array_module(x)
        lo = -np.inf if self.min is None else self.min
        hi = np.inf if self.max is None else self.max
        self.inside = (x >= lo) & (x <= hi)
        return xp.clip(x, lo, hi).astype(x.dtype, copy=False)

    def backward(self, gy):
        # gradient 1 inside [min, max], 0 where clipped
        return gy * self.inside


class Where(Function):
    """``where(cond, a, b)``: ``cond`` is a constant boolean array (saved), ``a`` and ``b`` differentiable."""

    def forward(self, a, b):
        _broadcast_check("where", a, b)
        self.a_shape, self.b_shape = a.shape, b.shape
        return get_array_module(a).where(self.cond, a, b)

    def backward(self, gy):
        zero = gy.dtype.type(0)
        xp = get_array_module(gy)
        return (unbroadcast(xp.where(self.cond, gy, zero), self.a_shape),
                unbroadcast(xp.where(self.cond, zero, gy), self.b_shape))


def _norm_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in axes:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor of {ndim} dimensions")
        out.append(a % ndim if ndim else 0)
    return tuple(sorted(out))


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


class AsType(Function):
    def forward(self, x):
        self.src = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.src)


# -- functional wrappers --------------------------------------------------------------------------------
def _t(x, like=None):
    if isinstance(x, Tensor):
        return x
    if like is not None:
        xp = get_array_module(like.data)
        arr = xp.asarray(x)
        if like.dtype.kind == "f" and arr.dtype.kind in "biuf" and (arr.ndim == 0 or arr.dtype.kind != "f"):
            arr = arr.astype(like.dtype)
        return Tensor(arr)
    return Tensor(np.asarray(x))


def add(a, b):
    """Elementwise ``a + b`` with broadcasting."""
    a = _t(a, b if isinstance(b, Tensor) else None)
    return Add.apply(a, _t(b, a))


def sub(a, b):
    a = _t(a, b if isinstance(b, Tensor) else None)
    return Sub.apply(a, _t(b, a))


def mul(a, b):
    a = _t(a, b if isinstance(b, Tensor) else None)
    return Mul.apply(a, _t(b, a))


def div(a, b):
    a = _t(a, b if isinstance(b, Tensor) else None)
    return Div.apply(a, _t(b, a))


def pow(a, b):
    a = _t(a, b if isinstance(b, Tensor) else None)
    return Pow.apply(a, _t(b, a))


def matmul(a, b):
    a = _t(a, b if isinstance(b, Tensor) else None)
    return MatMul.apply(a, _t(b, a))


def maximum(a, b):
    """Elementwise maximum; the gradient goes to the larger input."""
    a = _t(a, b if isinstance(b, Tensor) else None)
    return Maximum.apply(a, _t(b, a))


def minimum(a, b):
    return -maximum(-_t(a, b if isinstance(b, Tensor) else None), -_t(b, a if isinstance(a, Tensor) else None))


def neg(x):
    return Neg.apply(_t(x))


def exp(x):
    return Exp.apply(_t(x))


def log(x):
    return Log.apply(_t(x))


def sqrt(x):
    return Sqrt.apply(_t(x))


def abs(x):
    return Abs.apply(_t(x))


def clip(x, min=None, max=None):
    """Clamp to ``[min, max]`` (either may be None); gradient 0 where clipped."""
    return Clip.apply(_t(x), min=min, max=max)


clamp = clip


def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b`` (``cond`` carries no gradient)."""
    a = _t(a, b if isinstance(b, Tensor) else None)
    b = _t(b, a)
    c = cond.data if isinstance(cond, Tensor) else get_array_module(a.data).asarray(cond)
    return Where.apply(a, b, cond=c.astype(bool))


def sum(x, axis=None, keepdims=False, dim=None):
    """Sum over ``axis`` (alias ``dim``; int, tuple or None for all)."""
    return Sum.apply(_t(x), axis=dim if dim is not None else axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False, dim=None):
    x = _t(x)
    axes = _norm_axis(dim if dim is not None else axis, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    return sum(x, axes, keepdims) / count


def var(x, axis=None, keepdims=False, dim=None, unbiased=False, correction=None):
    """Variance; biased (divide by n) by default as NumPy; ``unbiased=True`` or ``correction=1`` for n-1."""
    x = _t(x)
    axes = _norm_axis(dim if dim is not None else axis, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    ddof = correction if correction is not None else int(unbiased)
    d = x - mean(x, axes, keepdims=True)
    return sum(d * d, axes, keepdims) / (count - ddof)


def max(x, axis=None, keepdims=False, dim=None):
    return MaxMin.apply(_t(x), axis=dim if dim is not None else axis, keepdims=keepdims, is_max=True)


def min(x, axis=None, keepdims=False, dim=None):
    return MaxMin.apply(_t(x), axis=dim if dim is not None else axis, keepdims=keepdims, is_max=False)


def astype(x, dtype):
    x = _t(x)
    return x if x.dtype == np.dtype(dtype) else AsType.apply(x, dtype=np.dtype(dtype))
