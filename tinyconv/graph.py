"""The graph walk of ``Tensor.backward`` (core.py), apart from the loop itself: the order in which functions are
visited, the check that saved inputs were not written in place since, the gradients each function receives
and returns (``output_grads``, ``input_grads``), and which gradient arrays a leaf may take as its ``.grad``
without a copy; and what a function keeps of its inputs (``hold_inputs``).  Functions here
read the graph's attributes; they import nothing of tinyconv but ``backend``.
"""
import weakref

import numpy as np

from . import backend


class GradOwnership:
    """Which gradient arrays a leaf may keep as its ``.grad`` as they are, without a copy (an optimisation).

    ``.grad`` must be an array nobody else holds, since optimisers and users change it in place.  A gradient
    computed in backward usually is one: a fresh array that the pass hands to one leaf only.  But an array may
    also be seen elsewhere: the caller's ``grad``, an array passed to a ``backward`` (which may return it, or
    a view of it, for several inputs), one routed to another function or already given to another input, or a
    buffer the function saved.  ``seen`` records the ids of every array of the first kinds; ``may_own`` says
    yes only for a fresh array (not a view) that is none of them.  Copying always would be correct too: this
    saves one copy of every parameter's gradient per step.
    """

    def __init__(self, seed):
        self.shared = {id(seed)}  # the caller's gradient

    def seen(self, arrays):
        """Record arrays that something else may now hold."""
        self.shared.update(id(a) for a in arrays)

    def may_own(self, f, gx):
        """Whether a leaf may take ``gx``, returned by ``f.backward``, as its ``.grad`` without copying it."""
        return gx.base is None and id(gx) not in self.shared and not saves_memory_of(f, gx)


def output_grads(f, gys):
    """The gradients of ``f``'s outputs; an output that no consumer used gets zeros (on its own device)."""
    return [gy if gy is not None else out_xp.zeros(shape, dtype)
            for gy, (shape, dtype, out_xp) in zip(gys, f.out_meta)]


def input_grads(f, gxs):
    """``(input, edge, gradient)`` for each input of ``f`` that needs one, checked against the input's shape
    and cast to its dtype (``f.backward`` returned ``gxs``)."""
    gxs = gxs if isinstance(gxs, tuple) else (gxs,)
    if len(gxs) != len(f.inputs):
        raise RuntimeError(f"{type(f).__name__}.backward returned {len(gxs)} gradients for "
                           f"{len(f.inputs)} inputs (return None for an input without gradient)")
    out = []
    for x, edge, need, gx in zip(f.inputs, f.edges, f.needs_input_grad, gxs):
        if not need or gx is None:
            continue
        if gx.shape != tuple(x.shape):
            raise RuntimeError(f"{type(f).__name__}.backward returned a gradient of shape "
                               f"{tuple(gx.shape)} for an input of shape {x.shape}")
        if gx.dtype != x.dtype:  # e.g. float32 + float64 inputs: each gradient in its input's dtype
            gx = gx.astype(x.dtype)
        out.append((x, edge, gx))
    return out


def saved_arrays(f):
    """The arrays ``f.forward`` saved (attributes, and arrays inside saved tuples and lists)."""
    for k in getattr(f, "_saved", ()):
        v = f.__dict__.get(k)
        for a in (v if isinstance(v, (tuple, list)) else (v,)):
            if backend.is_array(a):
                yield a


def may_share_memory(a, b):
    """Whether arrays ``a`` and ``b`` may overlap (NumPy's or CuPy's bounds test; identity where missing)."""
    if a is b:
        return True
    if type(a) is np.ndarray:  # the common case, quickly
        return type(b) is np.ndarray and bool(np.may_share_memory(a, b))
    may_share = getattr(backend.get_array_module(a), "may_share_memory", None)
    return type(a) is type(b) and may_share is not None and bool(may_share(a, b))


def saves_memory_of(f, arr):
    """Whether a buffer saved by ``f`` shares memory with ``arr`` (so writing ``arr`` corrupts it)."""
    return any(may_share_memory(a, arr) for a in saved_arrays(f))


def check_versions(f):
    """Refuse to back-propagate through ``f`` when a tensor it saved was written in place since."""
    if f.overwritten is not None:
        raise RuntimeError(f"backward(): {f.overwritten}")
    for i, (x, v) in enumerate(zip(f._held, f.versions)):
        if x is None:
            continue
        if type(x) is WeakInput:
            rec, x = x, x.ref()
            if x is None:  # gone: it was written, if at all, while it lived (its last write is on record)
                if rec.written is not None and rec.written[0] != v and saves_bounds_of(f, *rec.written[1:]):
                    _refuse(f, i, rec.shape, rec.written[0], v)
                continue
        if x._version != v and saves_memory_of(f, x.data):
            _refuse(f, i, x.shape, x._version, v)


def _refuse(f, i, shape, version, expected):
    raise RuntimeError(
        f"backward(): one of the tensors needed for gradient computation has been modified by an "
        f"in-place operation: input {i} of {type(f).__name__}, of shape {tuple(shape)}, is at version "
        f"{version}; expected version {expected}. Write into a copy (x = x.clone()) before the "
        f"in-place operation, or do it before using x.")


# -- what a function keeps of its inputs ----------------------------------------------------------------
# PyTorch's graph keeps the tensors a backward needs (saved by the function itself), not every input.  Held
# as tensors, the inputs would keep every intermediate array of the forward pass alive until backward: a
# batch norm's output, read once by the ReLU after it, is 40% of DenseNet-121's forward memory.  So an input
# is held as a tensor only when the graph needs the tensor itself: a leaf (its ``.grad`` is accumulated) and
# an input whose memory an output shares (a view: holding it costs nothing, and ``x[...] = v`` on the view
# must find it).  Any other input is a ``WeakInput``: its shape and dtype, and a weak reference that still
# finds the tensor while someone holds it (``retain_grad``, the version check, the graph's pictures).


class WeakInput:
    """A function's input tensor held weakly.  ``written`` is ``(version, array type, byte bounds)`` of its last
    in-place write after the function read it (set by ``Tensor._version``'s setter: the tensor keeps weak
    references to its ``WeakInput``s in ``_weak_uses``), so the version check still works once it is gone."""
    __slots__ = ("ref", "shape", "dtype", "written", "__weakref__")

    def __init__(self, t):
        self.ref, self.shape, self.dtype, self.written = weakref.ref(t), t.data.shape, t.data.dtype, None
        uses = t._weak_uses
        if uses is None:
            uses = t._weak_uses = _Uses()
        if len(uses) >= uses.prune_at:  # a tensor read by many functions: forget the records of those freed,
            uses[:] = [u for u in uses if u() is not None]  # each time the list has doubled (so O(1) a use)
            uses.prune_at = max(8, 2 * len(uses))
        uses.append(weakref.ref(self))

    def get(self):
        t = self.ref()
        return t if t is not None else GoneInput(self.shape, self.dtype)


class _Uses(list):
    """A tensor's weak references to its ``WeakInput``s, and the length at which the dead ones are dropped."""
    prune_at = 8


class GoneInput:
    """Stands in ``Function.inputs`` for an input tensor nobody holds any more: its shape and dtype only."""
    data = grad = _ctx = None
    requires_grad, _retain_grad = True, False

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), dtype

    ndim = property(lambda self: len(self.shape))

    def __repr__(self):
        return f"<input tensor no longer held: {self.shape} {self.dtype}>"


def hold_inputs(tensors, outputs):
    """What a recording function keeps of ``tensors`` (``None``, a tensor, or a ``WeakInput`` each), given the
    arrays ``outputs`` that its forward returned."""
    return [t if t is None or t._ctx is None or any(_shares(y, t.data) for y in outputs) else WeakInput(t)
            for t in tensors]


def _shares(y, a):
    return y is a or (getattr(y, "base", None) is not None and may_share_memory(y, a))


def mark_written(uses, version, data):
    """Record an in-place write (the new ``version``) on the ``WeakInput``s of a tensor (``uses``)."""
    written = (version, type(data), byte_bounds(data))
    for ref in uses:
        rec = ref()
        if rec is not None:
            rec.written = written


def byte_bounds(a):
    """``(first byte, one past the last byte)`` of array ``a``'s memory (NumPy's or CuPy's)."""
    ptr = a.__array_interface__["data"][0] if isinstance(a, np.ndarray) else int(a.data.ptr)
    lo = hi = ptr
    for n, stride in zip(a.shape, a.strides):
        if n == 0:
            return ptr, ptr
        if stride < 0:
            lo += (n - 1) * stride
        else:
            hi += (n - 1) * stride
    return lo, hi + a.itemsize


def saves_bounds_of(f, kind, bounds):
    """Whether a buffer saved by ``f`` overlaps ``bounds``, the memory of an array of type ``kind`` that is no
    longer held."""
    lo, hi = bounds
    for a in saved_arrays(f):
        if type(a) is kind and a.size:
            a_lo, a_hi = byte_bounds(a)
            if a_lo < hi and lo < a_hi:
                return True
    return False


def topological_order(root):
    """The functions reachable from ``root``, each listed after every function that consumes its outputs.

    Kahn's algorithm, without recursion: count each function's consumers inside the graph, then release a
    function once all of them have passed it their gradient.
    """
    pending, stack = {root: 0}, [root]
    while stack:
        f = stack.pop()
        if f._freed:
            raise RuntimeError(f"backward(): trying to backward through {type(f).__name__} a second time, "
                               "but its saved buffers were freed; call backward(retain_graph=True) "
                               "the first time")
        for edge in f.edges:
            g = None if edge is None else edge[0]
            if g is not None:
                if g not in pending:
                    pending[g] = 0
                    stack.append(g)
                pending[g] += 1
    order, ready = [], [root]
    while ready:
        f = ready.pop()
        order.append(f)
        for edge in f.edges:
            g = None if edge is None else edge[0]
            if g is not None:
                pending[g] -= 1
                if pending[g] == 0:
                    ready.append(g)
    return order
