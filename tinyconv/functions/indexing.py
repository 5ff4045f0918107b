"""Selection by index and the small everyday tensor operations built from the other ops.

Each is written as a composition of differentiable ops (``getitem``, ``where``, ``TakeAlongDim``,
``broadcast_to``, ...), so none needs a backward of its own: ``topk`` and ``sort`` pick values with
``gather``, whose gradient scatters the output gradient back to the picked places; ``masked_fill`` is a
``where``; ``repeat`` is a broadcast (whose gradient sums the copies) followed by a reshape.
"""
import builtins

import numpy as np

from ..backend import get_array_module
from ..core import Tensor, as_tensor
from .basic import where
from .reduction import TakeAlongDim, ValuesIndices, sum, var
from .shape import broadcast_to, clone, getitem, reshape


def _dim(dim, ndim, op):
    if not -builtins.max(ndim, 1) <= dim < builtins.max(ndim, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor of {ndim} dimensions")
    return dim % builtins.max(ndim, 1)


def gather(x, dim, index):
    """``out[i][j] = x[i][index[i][j]]`` along ``dim`` (``torch.gather``); the gradient scatter-adds back."""
    x = as_tensor(x)
    idx = index.data if isinstance(index, Tensor) else get_array_module(x.data).asarray(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"gather: index must be an integer tensor, got dtype {idx.dtype}")
    return TakeAlongDim.apply(x, indices=idx, axis=_dim(dim, x.ndim, "gather"))


def index_select(x, dim, index):
    """The slices of ``x`` at the integer ``index`` (1-d) along ``dim`` (``torch.index_select``)."""
    d = _dim(dim, x.ndim, "index_select")
    return getitem(x, (slice(None),) * d + (index.data if isinstance(index, Tensor) else np.asarray(index),))


def sort(x, dim=-1, descending=False, stable=False):
    """``(values, indices)`` sorted along ``dim`` (``torch.sort``); ties keep their order (a stable sort)."""
    x = as_tensor(x)
    d = _dim(dim, x.ndim, "sort")
    xp = get_array_module(x.data)
    idx = xp.argsort(-x.data if descending else x.data, axis=d, kind="stable").astype(np.int64)
    return ValuesIndices(TakeAlongDim.apply(x, indices=idx, axis=d), Tensor(idx))


def argsort(x, dim=-1, descending=False, stable=False):
    """The indices that sort ``x`` along ``dim`` (``torch.argsort``)."""
    return sort(x, dim, descending).indices


def topk(x, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (``largest=False``: smallest) elements along ``dim`` as ``(values, indices)``,
    sorted from the extreme inward (``torch.topk``); the gradient goes to the picked elements."""
    x = as_tensor(x)
    d = _dim(dim, x.ndim, "topk")
    n = x.shape[d] if x.ndim else 1
    if not 0 <= k <= n:
        raise ValueError(f"topk: k={k} is out of range for dim {dim} of size {n}")
    values, indices = sort(x, d, descending=largest)
    keep = (slice(None),) * d + (slice(0, k),)
    return ValuesIndices(getitem(values, keep), Tensor(indices.data[keep]))


def masked_fill(x, mask, value):
    """``x`` with ``value`` where ``mask`` (a bool tensor broadcastable to x) is true (``torch.masked_fill``)."""
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype != bool:
        raise TypeError(f"masked_fill: mask must be a bool tensor (e.g. x > 0), got dtype {m.dtype}")
    value = as_tensor(value, like=x)
    if value.ndim:
        raise ValueError(f"masked_fill: value must be a number or a 0-d tensor, got shape {value.shape}")
    return where(m, value, x)


def repeat(x, *sizes):
    """Tile ``x``: ``sizes[i]`` copies along dim i (``torch.Tensor.repeat``, NumPy's ``tile``).

    Leading extra sizes add dims.  Built as a broadcast to ``(r0, n0, r1, n1, ...)`` and a reshape, so the
    gradient sums the copies.
    """
    sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: {len(sizes)} sizes given for a tensor of {x.ndim} dimensions "
                         f"(give at least one per dimension)")
    shape = (1,) * (len(sizes) - x.ndim) + x.shape
    interleaved = reshape(x, tuple(v for n in shape for v in (1, n)))
    tiled = broadcast_to(interleaved, tuple(v for r, n in zip(sizes, shape) for v in (r, n)))
    return reshape(tiled, tuple(r * n for r, n in zip(sizes, shape)))


def contiguous(x):
    """``x`` itself when its array is C-contiguous, else a C-ordered copy (differentiable)."""
    return x if x.data.flags.c_contiguous else clone(x)


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None, keepdims=False):
    """Standard deviation ``sqrt(var)``; unbiased (``correction=1``) by default, as ``torch.std``."""
    return var(x, axis if dim is None else dim, keepdims=keepdim or keepdims, unbiased=unbiased,
               correction=correction).sqrt()


def norm(x, p="fro", dim=None, keepdim=False):
    """The 2-norm ``sqrt(sum(x^2))`` (``p=2`` or ``'fro'``), or the 1-norm ``sum(|x|)`` (``p=1``), over ``dim``."""
    if p in ("fro", 2, 2.0):
        return sum(x * x, dim, keepdims=keepdim).sqrt()
    if p in (1, 1.0):
        return sum(abs(x), dim, keepdims=keepdim)
    raise ValueError(f"norm: p={p!r} is not supported; use p=2 ('fro') or p=1")


def unbind(x, dim=0):
    """The slices of ``x`` along ``dim``, as a tuple of tensors with that dim removed (``torch.unbind``)."""
    d = _dim(dim, x.ndim, "unbind")
    return tuple(getitem(x, (slice(None),) * d + (i,)) for i in range(x.shape[d]))


def narrow(x, dim, start, length):
    """``x`` restricted to ``start:start+length`` along ``dim`` (``torch.narrow``)."""
    d = _dim(dim, x.ndim, "narrow")
    return getitem(x, (slice(None),) * d + (slice(start, start + length),))


def flip(x, dims):
    """``x`` reversed along each dim of ``dims`` (``torch.flip``)."""
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    index = [slice(None)] * x.ndim
    for d in dims:
        index[_dim(d, x.ndim, "flip")] = slice(None, None, -1)
    return getitem(x, tuple(index))


def one_hot(tensor, num_classes=-1):
    """Integer class indices of shape ``(*)`` as an int64 tensor of shape ``(*, num_classes)`` with a 1 at each
    index (``torch.nn.functional.one_hot``; ``num_classes=-1``: one more than the largest index)."""
    idx = tensor.data if isinstance(tensor, Tensor) else np.asarray(tensor)
    xp = get_array_module(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected an integer tensor of class indices, got dtype {idx.dtype} "
                        f"(use .long())")
    if num_classes == -1:
        if idx.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from an empty tensor; pass num_classes")
        num_classes = int(idx.max()) + 1
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        raise ValueError(f"one_hot: class values must lie in [0, {num_classes}), got values in "
                         f"[{int(idx.min())}, {int(idx.max())}]")
    return Tensor((idx[..., None] == xp.arange(num_classes)).astype(np.int64))

