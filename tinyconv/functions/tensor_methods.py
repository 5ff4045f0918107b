"""The everyday PyTorch ``Tensor`` methods beyond the operators (``methods.py``), bound to ``Tensor`` at import.

Each is a one-line adapter onto a function of this package, so its gradient is that function's.  Where
tinyconv deliberately differs from PyTorch the method raises with the alternative in the message.
"""
import numpy as np

from ..backend import get_array_module
from ..core import Tensor
from . import basic, indexing, inplace, shape


def _no_grad_result(fn):
    def method(self, *args):
        args = [a.data if isinstance(a, Tensor) else a for a in args]
        return Tensor(fn(self.data, *args))  # comparisons and logical reductions carry no gradient
    return method


def _matmul_2d(name, ndim):
    def method(self, other):
        if self.ndim != ndim or other.ndim != ndim:
            raise ValueError(f"{name}: expected two {ndim}-d tensors, got shapes {self.shape} and {other.shape} "
                             f"(use matmul/@ for broadcasting products)")
        return basic.matmul(self, other)
    return method


def _new(fill):
    def method(self, *size, dtype=None, requires_grad=False):
        size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
        xp = get_array_module(self.data)
        return Tensor(xp.full(size, fill, dtype=dtype or self.dtype), requires_grad)
    return method


def _new_tensor(self, data, dtype=None, requires_grad=False):
    xp = get_array_module(self.data)
    return Tensor(xp.array(data.data if isinstance(data, Tensor) else data, dtype=dtype or self.dtype),
                  requires_grad)


def _half(self):
    return basic.astype(self, np.float16)  # Tensor refuses float16 with the message naming float32/float64


def _type(self, dtype=None):
    if dtype is None:
        return f"tinyconv.{self.dtype.name}"
    return basic.astype(self, dtype)


def _all(self, dim=None, keepdim=False):
    return Tensor(get_array_module(self.data).all(self.data, axis=dim, keepdims=keepdim))


def _any(self, dim=None, keepdim=False):
    return Tensor(get_array_module(self.data).any(self.data, axis=dim, keepdims=keepdim))


def _nonzero(self, as_tuple=False):
    idx = get_array_module(self.data).nonzero(self.data)
    if as_tuple:
        return tuple(Tensor(i.astype(np.int64)) for i in idx)
    return Tensor(get_array_module(self.data).stack(idx, axis=1).astype(np.int64))


def _moved(ndim, source, destination):
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    src, dst = [s % ndim for s in src], [d % ndim for d in dst]
    rest = iter(a for a in range(ndim) if a not in src)
    where = dict(zip(dst, src))
    return tuple(where[i] if i in where else next(rest) for i in range(ndim))


_METHODS = {
    # selection and shape
    "topk": indexing.topk, "sort": indexing.sort, "argsort": indexing.argsort, "gather": indexing.gather,
    "index_select": indexing.index_select, "masked_fill": indexing.masked_fill, "repeat": indexing.repeat,
    "contiguous": indexing.contiguous, "unbind": indexing.unbind, "narrow": indexing.narrow,
    "flip": indexing.flip, "std": indexing.std, "norm": indexing.norm,
    "view_as": lambda self, other: shape.reshape(self, other.shape),
    "reshape_as": lambda self, other: shape.reshape(self, other.shape),
    "expand_as": lambda self, other: shape.broadcast_to(self, other.shape),
    "type_as": lambda self, other: basic.astype(self, other.dtype),
    "t": lambda self: shape.transpose(self) if self.ndim == 2 else self,
    "swapaxes": shape.transpose, "swapdims": shape.transpose,
    "mm": _matmul_2d("mm", 2), "bmm": _matmul_2d("bmm", 3),
    "square": lambda self: self * self,
    "add": lambda self, other, alpha=1: basic.add(self, other if alpha == 1 else other * alpha),
    "sub": lambda self, other, alpha=1: basic.sub(self, other if alpha == 1 else other * alpha),
    # dtypes
    "int": lambda self: Tensor(self.data.astype(np.int32)), "bool": lambda self: Tensor(self.data.astype(bool)),
    "half": _half, "type": _type,
    "is_floating_point": lambda self: self.dtype.kind == "f",
    "element_size": lambda self: self.dtype.itemsize,
    # facts
    "ndimension": lambda self: self.ndim, "nelement": lambda self: int(self.data.size),
    "is_contiguous": lambda self: bool(self.data.flags.c_contiguous),
    # new tensors on x's device and dtype
    "new_zeros": _new(0), "new_ones": _new(1), "new_tensor": _new_tensor,
    "new_full": lambda self, size, fill_value, dtype=None, requires_grad=False:
        _new(fill_value)(self, size, dtype=dtype, requires_grad=requires_grad),
    # comparisons and logic (no gradient)
    "lt": _no_grad_result(lambda a, b: a < b), "le": _no_grad_result(lambda a, b: a <= b),
    "gt": _no_grad_result(lambda a, b: a > b), "ge": _no_grad_result(lambda a, b: a >= b),
    "ne": _no_grad_result(lambda a, b: a != b), "all": _all, "any": _any, "nonzero": _nonzero,
    "reciprocal": lambda self: 1.0 / self, "log1p": lambda self: basic.log(self + 1.0),
    "movedim": lambda self, source, destination: shape.permute(self, _moved(self.ndim, source, destination)),
    "unflatten": lambda self, dim, sizes: shape.reshape(
        self, self.shape[:dim % self.ndim] + tuple(sizes) + self.shape[dim % self.ndim + 1:]),
    # piecewise-constant: no gradient flows through them (PyTorch's is zero everywhere)
    "floor": _no_grad_result(lambda a: get_array_module(a).floor(a)),
    "ceil": _no_grad_result(lambda a: get_array_module(a).ceil(a)),
    "round": _no_grad_result(lambda a: get_array_module(a).round(a)),
    "sign": _no_grad_result(lambda a: get_array_module(a).sign(a)),
    # in place (README: "In-place writes")
    "fill_": inplace.fill_, "copy_": inplace.copy_, "add_": inplace.add_, "sub_": inplace.sub_,
    "mul_": inplace.mul_, "div_": inplace.div_, "clamp_": inplace.clamp_, "clip_": inplace.clip_,
    "masked_fill_": inplace.masked_fill_, "uniform_": inplace.uniform_, "normal_": inplace.normal_,
    "exp_": inplace.exp_, "sqrt_": inplace.sqrt_, "relu_": inplace.relu_, "sigmoid_": inplace.sigmoid_,
    "tanh_": inplace.tanh_,
}

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

Tensor.mT = property(lambda self: shape.transpose(self, -2, -1))
Tensor.grad_fn = property(lambda self: self._ctx)  # the Function that made this tensor; None for a leaf
