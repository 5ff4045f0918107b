"""Elementwise arithmetic, matrix product and reductions, with their gradients.

Broadcasting: a binary op's inputs may broadcast against each other (NumPy rules); the gradient of each
input is summed back over the broadcast axes (``unbroadcast``), so it always has the input's shape.
Reductions (sum, mean, var, max, min) live in ``reduction.py``, shape-only operations (reshape, transpose,
indexing, concatenation) in ``shape.py``.
"""
import numpy as np

from ..backend import get_array_module, get_kernel
from ..core import Function, Tensor, as_tensor


def unbroadcast(g, shape):
    """Sum gradient ``g`` over the axes along which an input of ``shape`` was broadcast."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape)
                                       if n == 1 and g.shape[i + extra] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _broadcast_check(op, a, b):
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"operator {op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast "
                         "together") from None


def _operands(a, b):
    """Both operands as tensors: Python scalars take the tensor's dtype (float32 * 2.5 stays float32);
    an integer tensor meeting a floating one is cast to that dtype (int64 * float32 -> float32, as PyTorch)."""
    a = as_tensor(a, like=b if isinstance(b, Tensor) else None)
    b = as_tensor(b, like=a)
    if a.dtype.kind in "biu" and b.dtype.kind == "f":
        a = astype(a, b.dtype)
    elif b.dtype.kind in "biu" and a.dtype.kind == "f":
        b = astype(b, a.dtype)
    return a, b


def _floating(x):
    """``x`` as a tensor, integers cast to float32 (for exp, log, sqrt, division, mean)."""
    x = as_tensor(x)
    return astype(x, np.float32) if x.dtype.kind in "biu" else x


class _Binary(Function):
    symbol = "?"

    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        try:
            return self.compute(a, b)
        except ValueError:
            _broadcast_check(self.symbol, a, b)  # a clearer message when the shapes are the problem
            raise


class Add(_Binary):
    symbol = "+"

    def compute(self, a, b):
        return a + b

    def backward(self, gy):
        # d(a+b)/da = d(a+b)/db = 1
        return unbroadcast(gy, self.a_shape), unbroadcast(gy, self.b_shape)


def add(a, b):
    """Elementwise ``a + b`` with broadcasting."""
    return Add.apply(*_operands(a, b))


class Sub(_Binary):
    symbol = "-"

    def compute(self, a, b):
        return a - b

    def backward(self, gy):
        # d(a-b)/da = 1, d(a-b)/db = -1
        return unbroadcast(gy, self.a_shape), unbroadcast(-gy, self.b_shape)


def sub(a, b):
    """Elementwise ``a - b`` with broadcasting."""
    return Sub.apply(*_operands(a, b))


class Mul(_Binary):
    symbol = "*"

    def compute(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        # d(ab)/da = b, d(ab)/db = a
        return unbroadcast(gy * self.b, self.a_shape), unbroadcast(gy * self.a, self.b_shape)


def mul(a, b):
    """Elementwise ``a * b`` with broadcasting."""
    return Mul.apply(*_operands(a, b))


class Div(_Binary):
    symbol = "/"

    def compute(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        ga = gy / self.b
        return unbroadcast(ga, self.a_shape), unbroadcast(-ga * self.a / self.b, self.b_shape)


def div(a, b):
    """Elementwise true division ``a / b`` with broadcasting (integers divide in float32)."""
    a, b = _operands(a, b)
    return Div.apply(_floating(a), _floating(b))


class Pow(_Binary):
    symbol = "**"

    def compute(self, a, b):
        self.a, self.b = a, b
        self.y = a ** b
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        # d(a^b)/da = b a^(b-1)
        ga = unbroadcast(gy * self.b * self.a ** (self.b - 1), self.a_shape)
        if not self.needs_input_grad[1]:  # the usual x ** 2: no log needed
            return ga, None
        # d(a^b)/db = a^b log a   (defined for a > 0; 0 where a == 0 and the term vanishes)
        log_a = xp.log(xp.where(self.a > 0, self.a, 1))
        return ga, unbroadcast(gy * self.y * log_a, self.b_shape)


def pow(a, b):
    """Elementwise ``a ** b``; the gradient with respect to ``b`` is ``a^b log a`` (0 where ``a <= 0``)."""
    return Pow.apply(*_operands(a, b))


class Maximum(_Binary):
    symbol = "maximum"

    def compute(self, a, b):
        xp = get_array_module(a)
        dtype = xp.result_type(a, b)
        # a's share of the gradient: 1 where a > b, 1/2 on ties, 0 where b is larger
        self.a_share = (a > b).astype(dtype) + (a == b).astype(dtype) * 0.5
        return xp.maximum(a, b)

    def backward(self, gy):
        # d max(a, b) = da where a > b, db where b > a; on ties PyTorch's convention, half to each
        return (unbroadcast(gy * self.a_share, self.a_shape),
                unbroadcast(gy * (1 - self.a_share), self.b_shape))


def maximum(a, b):
    """Elementwise maximum; the gradient goes to the larger input, split half and half on ties (as in
    PyTorch)."""
    return Maximum.apply(*_operands(a, b))


def minimum(a, b):
    """Elementwise minimum, ``-maximum(-a, -b)``; the gradient goes to the smaller input, half and half on
    ties."""
    a, b = _operands(a, b)
    return -maximum(-a, -b)


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
        return get_kernel("matmul", a)(a, b)  # y = a @ b

    def backward(self, gy):
        xp = get_array_module(gy)
        # a 1-D operand acts as a (1, k) row or a (k, 1) column whose extra axis is dropped from y
        a = self.a[None, :] if self.a.ndim == 1 else self.a
        b = self.b[:, None] if self.b.ndim == 1 else self.b
        gy = gy.reshape(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]))
        # dA = dY @ B^T, dB = A^T @ dY  (summed over broadcast batch axes)
        ga = unbroadcast(gy @ xp.swapaxes(b, -1, -2), a.shape).reshape(self.a.shape)
        gb = unbroadcast(xp.swapaxes(a, -1, -2) @ gy, b.shape).reshape(self.b.shape)
        return ga, gb


def matmul(a, b):
    """Matrix product ``a @ b`` with NumPy's rules: 1-D vectors, stacks of matrices broadcast."""
    return MatMul.apply(*_operands(a, b))


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


def neg(x):
    """``-x``."""
    return Neg.apply(as_tensor(x))


class Exp(Function):
    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        # d exp(x) = exp(x)
        return gy * self.y


def exp(x):
    """Elementwise ``e^x``."""
    return Exp.apply(_floating(x))


class Log(Function):
    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, gy):
        # d log(x) = 1/x
        return gy / self.x


def log(x):
    """Elementwise natural logarithm."""
    return Log.apply(_floating(x))


class Sqrt(Function):
    def forward(self, x):
        self.y = get_array_module(x).sqrt(x)
        return self.y

    def backward(self, gy):
        # d sqrt(x) = 1 / (2 sqrt(x))
        return gy / (2 * self.y)


def sqrt(x):
    """Elementwise square root; its gradient ``1 / (2 sqrt(x))`` is infinite at 0."""
    return Sqrt.apply(_floating(x))


class Abs(Function):
    def forward(self, x):
        xp = get_array_module(x)
        self.sign = xp.sign(x)
        return xp.abs(x)

    def backward(self, gy):
        # d|x| = sign(x)  (0 at 0)
        return gy * self.sign


def abs(x):
    """Elementwise ``|x|``; the gradient at 0 is 0."""
    return Abs.apply(as_tensor(x))


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


def clip(x, min=None, max=None):
    """Clamp to ``[min, max]`` (either may be None); gradient 0 where clipped."""
    return Clip.apply(as_tensor(x), min=min, max=max)


clamp = clip


class Where(Function):
    """``where(cond, a, b)``: ``cond`` is a constant boolean array (saved), ``a`` and ``b`` differentiable."""

    def forward(self, a, b):
        try:
            np.broadcast_shapes(self.cond.shape, a.shape, b.shape)
        except ValueError:
            raise ValueError(f"where: condition {tuple(self.cond.shape)}, a {tuple(a.shape)} and b "
                             f"{tuple(b.shape)} cannot be broadcast together") from None
        self.a_shape, self.b_shape = a.shape, b.shape
        return get_array_module(a).where(self.cond, a, b)

    def backward(self, gy):
        zero = gy.dtype.type(0)
        xp = get_array_module(gy)
        return (unbroadcast(xp.where(self.cond, gy, zero), self.a_shape),
                unbroadcast(xp.where(self.cond, zero, gy), self.b_shape))


def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b``, broadcasting all three (``cond`` carries no gradient)."""
    a, b = _operands(a, b)
    c = cond.data if isinstance(cond, Tensor) else get_array_module(a.data).asarray(cond)
    return Where.apply(a, b, cond=c.astype(bool))


class AsType(Function):
    def forward(self, x):
        self.src = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.src)


def astype(x, dtype):
    """Cast to ``dtype`` (differentiable: the gradient is cast back)."""
    x = as_tensor(x)
    return x if x.dtype == np.dtype(dtype) else AsType.apply(x, dtype=np.dtype(dtype))
