"""Operations that only move elements around: reshape, transpose, indexing, concatenation, padding.

Their gradients move the output gradient back to where each element came from: the inverse reshape or
permutation, a scatter-add for indexing (an index may repeat), a split for a concatenation.
"""
import numpy as np

from ..backend import get_array_module, scatter_add
from ..core import Function, Tensor, as_tensor, is_grad_enabled, may_share_memory, saves_memory_of
from .basic import unbroadcast


class Reshape(Function):
    def forward(self, x):
        self.x_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} "
                             f"({x.size} elements) into {tuple(self.shape)}") from None

    def backward(self, gy):
        return gy.reshape(self.x_shape)


def reshape(x, *shape):
    """View ``x`` with a new shape (one dimension may be -1)."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Reshape.apply(x, shape=shape)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge axes ``start_dim..end_dim`` into one (a 0-d tensor becomes 1-d, as PyTorch)."""
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = start_dim % x.ndim, end_dim % x.ndim
    shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
    return reshape(x, shape)


def squeeze(x, dim=None):
    """Drop axes of length 1 (all of them, or only ``dim`` if it has length 1, as PyTorch)."""
    dims = [d % x.ndim for d in ((dim,) if isinstance(dim, int) else dim)] if dim is not None else range(x.ndim)
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1)))


def unsqueeze(x, dim):
    """Insert an axis of length 1 at position ``dim`` (negative counts from the end of the result)."""
    d = dim % (x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


class Permute(Function):
    def forward(self, x):
        if sorted(a % max(x.ndim, 1) for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"permute: {tuple(self.axes)} is not a permutation of the {x.ndim} axes "
                             f"of a tensor of shape {tuple(x.shape)}")
        return x.transpose(self.axes)

    def backward(self, gy):
        # the inverse permutation sends every axis back
        return gy.transpose(np.argsort([a % gy.ndim for a in self.axes]))


def permute(x, *axes):
    """Reorder the axes: output axis i is input axis ``axes[i]`` (``x.permute(0, 2, 3, 1)``: NCHW -> NHWC)."""
    axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    return Permute.apply(x, axes=tuple(axes))


def transpose(x, dim0=None, dim1=None):
    """Swap two axes (PyTorch), or reverse all axes when none are given (NumPy's ``.T``)."""
    if dim0 is None:
        return permute(x, tuple(reversed(range(x.ndim))))
    axes = list(range(x.ndim))
    axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
    return permute(x, tuple(axes))


class GetItem(Function):
    def forward(self, x):
        self.x_shape, self.x_dtype = x.shape, x.dtype
        return x[self.index]

    def backward(self, gy):
        gx = get_array_module(gy).zeros(self.x_shape, self.x_dtype)
        if _is_fancy(self.index):
            # scatter-add: an element picked twice (x[[0, 0]]) receives both gradients
            scatter_add(gx, self.index, gy)
        else:
            gx[self.index] = gy  # a basic index picks every element at most once
        return gx


def _is_fancy(index):
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, (list, np.ndarray)) or hasattr(p, "__cuda_array_interface__") for p in parts)


def getitem(x, index):
    """``x[index]``: NumPy basic and advanced indexing (ints, slices, None, ..., integer or boolean arrays)."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(x, index=index)


class SetItem(Function):
    """``x[index] = v`` written into x's own array; the output is that array."""

    def forward(self, x, v):
        self.v_shape = v.shape
        try:
            x[self.index] = v
        except ValueError as e:
            raise ValueError(f"x[...] = value: a value of shape {tuple(v.shape)} cannot be written into x of "
                             f"shape {tuple(x.shape)} at that index ({e})") from None
        return x

    def backward(self, gy):
        # y = x with the indexed positions replaced by v: those positions no longer depend on x (dx = 0
        # there, gy elsewhere), and dv = gy[index], summed over the axes along which v was broadcast
        gx = gy.copy()
        gx[self.index] = 0
        return gx, unbroadcast(gy[self.index], self.v_shape)


def setitem(x, index, value):
    """``x[index] = value`` in place (``Tensor.__setitem__``), recorded by autograd as in PyTorch.

    ``value``: a tensor or constant broadcastable to ``x[index]`` (cast to x's dtype).  When x or value
    requires grad, x gets a new history (its old one stays with the functions that used it before) and its
    version is bumped: a backward through a function that saved x's earlier data raises instead of
    returning a wrong gradient.  With a repeated integer index, which write lands is unspecified (as in
    PyTorch), and each value aimed at that position receives its gradient.
    Refused: a leaf that requires grad (outside ``no_grad``), and a tensor that is a recorded view of
    another (a slice or reshape of it) whose history would miss the write.
    """
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    value = as_tensor(value, like=x)
    recorded = is_grad_enabled() and (x.requires_grad or value.requires_grad)
    if recorded and x.requires_grad and x.is_leaf:
        raise RuntimeError(f"x[...] = value: x (shape {x.shape}) is a leaf tensor that requires grad; writing "
                           f"into it in place would lose its gradient. Do it under tinyconv.no_grad(), or write "
                           f"into a copy (x.clone())")
    ctx = x._ctx
    if ctx is not None:
        if any(t is not None and t.data is not None and t.data is not x.data and may_share_memory(t.data, x.data)
               for t in ctx.inputs):
            raise RuntimeError(f"x[...] = value: x (shape {x.shape}) is a view of the input of "
                               f"{type(ctx).__name__} (a slice, reshape or transpose); writing into it would "
                               f"change that tensor behind autograd's back. Write into x.clone() instead")
        if saves_memory_of(ctx, x.data):
            ctx.overwritten = (f"the output of {type(ctx).__name__} (shape {x.shape}), which it saved for its "
                               f"backward, was modified by an in-place operation (x[...] = value)")
    out = SetItem.apply(x, value, index=index)
    x._version += 1
    if out.requires_grad:  # x now stands for the written tensor
        x._adopt_history(out)
    return x


class Clone(Function):
    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        # y = x: dx = dy
        return gy


def clone(x):
    """A copy of x with its own array (differentiable: the gradient passes through unchanged)."""
    return Clone.apply(x)


class Concat(Function):
    def forward(self, *xs):
        xp = get_array_module(xs[0])
        ref = xs[0]
        for i, x in enumerate(xs[1:], 1):
            if x.ndim != ref.ndim or any(a != b for d, (a, b) in enumerate(zip(x.shape, ref.shape))
                                         if d != self.axis % ref.ndim):
                raise ValueError(f"cat: tensor {i} has shape {tuple(x.shape)}, incompatible with tensor 0 of "
                                 f"shape {tuple(ref.shape)} along axes other than {self.axis}")
        self.sizes = [x.shape[self.axis] for x in xs]
        return xp.concatenate(xs, axis=self.axis)

    def backward(self, gy):
        xp = get_array_module(gy)
        # each input gets its own slice of the gradient back
        return tuple(xp.split(gy, np.cumsum(self.sizes)[:-1].tolist(), axis=self.axis))


def cat(tensors, dim=0, axis=None):
    """Concatenate along an existing axis (channel concat: ``dim=1``)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    return Concat.apply(*tensors, axis=dim if axis is None else axis)


concatenate = cat


def stack(tensors, dim=0, axis=None):
    """Join along a new axis."""
    d = dim if axis is None else axis
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: expected tensors of one shape, got {sorted(shapes)}")
    nd = tensors[0].ndim + 1
    d = d % nd
    return cat([reshape(t, t.shape[:d] + (1,) + t.shape[d:]) for t in tensors], dim=d)


class Split(Function):
    def forward(self, x):
        self.x_shape = x.shape
        xp = get_array_module(x)
        return tuple(xp.split(x, np.cumsum(self.sizes)[:-1].tolist(), axis=self.axis))

    def backward(self, *gys):
        return get_array_module(gys[0]).concatenate(gys, axis=self.axis)


def split(x, split_size_or_sections, dim=0):
    """Split into chunks of ``split_size`` (int) or of the given sizes (list), as ``torch.split``."""
    n = x.shape[dim]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sizes = [min(step, n - i) for i in range(0, n, step)]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to {n}, the length of axis {dim}")
    out = Split.apply(x, sizes=sizes, axis=dim)
    return out if isinstance(out, tuple) else (out,)


def chunk(x, chunks, dim=0):
    """Split into ``chunks`` pieces of ``ceil(n / chunks)`` along ``dim`` (the last may be smaller), as
    ``torch.chunk``."""
    n = x.shape[dim]
    return split(x, -(-n // chunks), dim)


class BroadcastTo(Function):
    def forward(self, x):
        self.x_shape = x.shape
        return get_array_module(x).broadcast_to(x, self.shape)

    def backward(self, gy):
        return unbroadcast(gy, self.x_shape)


def broadcast_to(x, shape):
    """Expand ``x`` to ``shape`` by NumPy broadcasting; the gradient sums over the broadcast axes."""
    return BroadcastTo.apply(x, shape=tuple(shape))


class Pad(Function):
    """Constant padding of the last ``len(pad)//2`` axes, PyTorch order ``(left, right, top, bottom, ...)``."""

    def forward(self, x):
        xp = get_array_module(x)
        k = len(self.pad) // 2
        if len(self.pad) % 2 or k > x.ndim:
            raise ValueError(f"pad: expected an even-length tuple for at most {x.ndim} axes, got {self.pad}")
        widths = [(0, 0)] * (x.ndim - k) + [(self.pad[2 * i], self.pad[2 * i + 1]) for i in reversed(range(k))]
        self.crop = None  # saved for backward: the crop of negative padding, if any
        if any(lo < 0 or hi < 0 for lo, hi in widths):  # negative padding crops
            self.crop = tuple(slice(-lo if lo < 0 else 0, n + hi if hi < 0 else n)
                              for (lo, hi), n in zip(widths, x.shape))
            x = x[self.crop]
            widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
        self.inner = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
        return xp.pad(x, widths, mode="constant", constant_values=self.value)

    def backward(self, gy):
        # the padded border received constants: only the interior passes gradient back
        g = gy[self.inner]
        if self.crop is not None:
            xp = get_array_module(gy)
            full = xp.zeros(self.full_shape, gy.dtype)
            full[self.crop] = g
            return full
        return g


def pad(x, pad, mode="constant", value=0.0):
    """Pad ``x``; ``pad = (left, right[, top, bottom[, front, back]])`` for the last axes, as ``F.pad``."""
    if mode != "constant":
        raise ValueError(f"pad: mode {mode!r} is not supported (only 'constant')")
    f = Pad(pad=tuple(int(p) for p in pad), value=value, full_shape=x.shape)
    return f(x)


def channel_shuffle(x, groups):
    """ShuffleNet's channel shuffle (Zhang et al., 2018): ``(N, C, H, W)`` with channels in ``G`` groups of
    ``C/G``; view as ``(N, G, C/G, H, W)``, swap the two channel axes, flatten back, so each group of the next
    grouped convolution sees channels from every group.  Composed of reshape and permute (their gradients)."""
    if x.ndim < 2 or x.shape[1] % groups:
        raise ValueError(f"channel_shuffle: the number of channels must be divisible by groups={groups}, "
                         f"got input of shape {x.shape}")
    n, c = x.shape[:2]
    y = reshape(x, (n, groups, c // groups) + x.shape[2:])
    y = permute(y, (0, 2, 1) + tuple(range(3, x.ndim + 1)))
    return reshape(y, x.shape)


class AppendChannels(Function):
    """``s_l = cat(s_{l-1}, x_l)`` along the channels, stored in a preallocated ``buffer`` (hyper-parameter):
    only ``x_l`` is copied (and ``s_{l-1}`` once, when it is the first: ``first=True``); the result and both
    gradients are views.  DenseNet's blocks grow their stack of feature maps this way (models/densenet.py)."""

    def forward(self, s, x):
        c0, c1 = s.shape[1], s.shape[1] + x.shape[1]
        if self.first:
            self.buffer[:, :c0] = s
        self.buffer[:, c0:c1] = x
        self.c0 = c0  # saved for backward: where s ends and x begins
        return self.buffer[:, :c1]

    def backward(self, gy):
        # s and x are the two channel ranges of the output: their gradients are the matching slices of dY
        return gy[:, :self.c0], gy[:, self.c0:]


def append_channels(s, x, buffer, first=False):
    """``cat([s, x], dim=1)`` written into ``buffer`` (N, >= C_s + C_x, H, W), which holds ``s`` already unless
    ``first``; returns the view ``buffer[:, :C_s + C_x]``."""
    return AppendChannels.apply(s, x, buffer=buffer, first=first)
