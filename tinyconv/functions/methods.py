"""Attach the operators and methods of ``Tensor`` (``+``, ``@``, ``x.sum()``, ``x[i]``, ...).

``core.py`` defines the engine alone; the operations it exposes as methods are written as ``Function``
subclasses in this package and bound here, once, at import.
"""
import numpy as np

from ..core import Tensor
from . import activation, basic, reduction, shape


def _rev(fn):
    return lambda self, other: fn(other, self)


def _compare(op):
    def method(self, other):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(op(self.data, other))  # comparisons carry no gradient
    return method


def _view(self, *shape_):
    return shape.reshape(self, *shape_)


def _expand(self, *sizes):
    sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes
    full = tuple(n if s == -1 else s for s, n in zip(sizes[len(sizes) - self.ndim:], self.shape))
    return shape.broadcast_to(self, tuple(sizes[:len(sizes) - self.ndim]) + full)


_METHODS = {
    "__add__": basic.add, "__radd__": _rev(basic.add),
    "__sub__": basic.sub, "__rsub__": _rev(basic.sub),
    "__mul__": basic.mul, "__rmul__": _rev(basic.mul),
    "__truediv__": basic.div, "__rtruediv__": _rev(basic.div),
    "__pow__": basic.pow, "__rpow__": _rev(basic.pow),
    "__matmul__": basic.matmul, "__rmatmul__": _rev(basic.matmul),
    "__neg__": basic.neg, "__abs__": basic.abs, "__getitem__": shape.getitem,
    "__setitem__": shape.setitem,
    "__lt__": _compare(lambda a, b: a < b), "__le__": _compare(lambda a, b: a <= b),
    "__gt__": _compare(lambda a, b: a > b), "__ge__": _compare(lambda a, b: a >= b),
    "__eq__": _compare(lambda a, b: a == b), "__ne__": _compare(lambda a, b: a != b),
    "eq": _compare(lambda a, b: a == b),
    "add": basic.add, "sub": basic.sub, "mul": basic.mul, "div": basic.div, "pow": basic.pow,
    "matmul": basic.matmul, "neg": basic.neg,
    "exp": basic.exp, "log": basic.log, "sqrt": basic.sqrt, "abs": basic.abs,
    "clip": basic.clip, "clamp": basic.clip, "maximum": basic.maximum, "minimum": basic.minimum,
    "sum": reduction.sum, "mean": reduction.mean, "var": reduction.var, "max": reduction.max,
    "min": reduction.min, "amax": reduction.amax, "amin": reduction.amin,
    "argmax": reduction.argmax, "argmin": reduction.argmin,
    "astype": basic.astype,
    "reshape": shape.reshape, "view": _view, "permute": shape.permute, "transpose": shape.transpose,
    "flatten": shape.flatten, "squeeze": shape.squeeze, "unsqueeze": shape.unsqueeze,
    "split": shape.split, "chunk": shape.chunk, "expand": _expand,
    "broadcast_to": shape.broadcast_to, "clone": shape.clone,
    "relu": activation.relu, "sigmoid": activation.sigmoid, "tanh": activation.tanh,
    "softmax": activation.softmax, "log_softmax": activation.log_softmax,
}

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

Tensor.__hash__ = object.__hash__
Tensor.T = property(lambda self: shape.transpose(self))
Tensor.float = lambda self: basic.astype(self, np.float32)
Tensor.double = lambda self: basic.astype(self, np.float64)
Tensor.long = lambda self: Tensor(self.data.astype(np.int64))
Tensor.size_of = lambda self, dim: self.shape[dim]
