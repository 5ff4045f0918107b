"""The autograd engine: ``Tensor``, ``Function``, the iterative backward pass and ``no_grad``.

A ``Tensor`` wraps a backend array (``numpy.ndarray`` on the CPU, ``cupy.ndarray`` on a GPU) in ``.data``.
Every differentiable operation is a ``Function`` subclass: ``forward`` works on raw arrays and keeps what
``backward`` needs as named attributes (``self.mask``, ``self.col``, ...); ``backward`` sits right under it and
maps the gradient of the output(s) to the gradients of the inputs.  Calling a function records the graph
(define-by-run): each output remembers the function that created it, each function its inputs (an
intermediate one only weakly, so that an array no backward needs is freed as the forward pass goes on:
``hold_inputs`` in graph.py).

``Tensor.backward`` visits the graph in reverse topological order computed *iteratively*, so a chain of
ten thousand operations (a deep DenseNet, an unrolled loop) needs no recursion.  Gradients of leaves
accumulate in ``.grad`` until zeroed; the arrays saved by each function are released after the pass unless
``retain_graph=True``.
"""
import contextvars

import numpy as np

from . import backend
from .grad_mode import (enable_grad, inference_mode, is_grad_enabled, no_grad,  # noqa: F401
                        set_grad_enabled)
from .graph import (GradOwnership, WeakInput, check_versions, hold_inputs, input_grads,  # noqa: F401
                    mark_written, may_share_memory, output_grads, saves_memory_of, topological_order)

# the queue of ``queue_callback`` while a backward pass runs (context-local: each thread's pass has its own)
_callbacks = contextvars.ContextVar("tinyconv_backward_callbacks", default=None)


class Function:
    """Base class of every differentiable operation.

    Subclasses take their hyper-parameters in ``__init__`` (keyword arguments, stored as attributes) and
    implement ``forward(*arrays) -> array or tuple of arrays`` and ``backward(*grad_outputs) -> gradient
    or tuple of gradients`` (one per input, ``None`` for inputs without gradient).  ``Cls.apply(*inputs,
    **hyper)`` runs it on tensors; inputs may be ``None`` (no bias) or Python/NumPy constants.

    Attributes assigned during ``forward`` are the saved state; they are deleted after backward (unless
    the graph is retained), and a second backward through the node then raises.  While the graph is
    recorded, ``self.inputs`` gives the input tensors (their shapes only, once an intermediate one is gone:
    a backward needs what its forward saved, not the inputs) and ``self.needs_input_grad`` says which need
    a gradient, so ``backward`` may skip work for the others.  Outputs whose gradient never arrives are
    given zeros, so ``backward`` always receives one array per output.
    """

    _freed = False
    _held = edges = versions = ()
    overwritten = None  # set when an output this function saved was written in place
    output_grads = None  # a dict to fill: {output index: its gradient} from the next backward (viz.graph)

    def __init__(self, **hyper):
        self.__dict__.update(hyper)

    @classmethod
    def apply(cls, *inputs, **hyper):
        """Run the function on tensors: ``Cls(**hyper)(*inputs)``, recording the graph."""
        return cls(**hyper)(*inputs)

    def __call__(self, *inputs):
        # one pass over the inputs (this runs for every op of every step): tensors, their arrays, whether all
        # arrays are NumPy's (the common all-CPU case needs no device check), whether any needs a gradient
        tensors, arrays, on_cpu, any_requires = [], [], True, False
        for x in inputs:
            if x is not None:
                if not isinstance(x, Tensor):
                    x = _as_tensor_like(x, inputs)
                on_cpu = on_cpu and type(x.data) is np.ndarray
                any_requires = any_requires or x.requires_grad
            tensors.append(x)
            arrays.append(None if x is None else x.data)
        if not on_cpu:
            _check_same_device(type(self).__name__, tensors)
        n_attrs = len(self.__dict__)
        outputs = self.forward(*arrays)
        self._saved = list(self.__dict__)[n_attrs:]  # attributes that forward added: the saved state
        multi = isinstance(outputs, tuple)
        outputs = outputs if multi else (outputs,)
        requires = any_requires and is_grad_enabled()
        results = tuple(Tensor(y, requires_grad=requires) for y in outputs)
        if requires:
            self._held = hold_inputs(tensors, outputs)  # leaves and viewed inputs as tensors, others weakly
            # the graph's edges as they are now: an input later written in place (``x[i] = v``) gets a new
            # history, but this function consumed the old one; versions detect a saved input written since
            self.edges = [None if t is None else (t._ctx, t._out_index) for t in tensors]
            self.versions = [None if t is None else t._version for t in tensors]
            self.needs_input_grad = [t is not None and t.requires_grad for t in tensors]
            self.out_meta = [(y.shape, y.dtype, backend.get_array_module(y.data)) for y in results]
            for i, r in enumerate(results):
                r._ctx, r._out_index = self, i
        else:
            self.release()
        return results if multi else results[0]

    @property
    def inputs(self):
        """The input tensors (``None`` for an absent one); an input that nobody holds any more, and that the
        graph did not need to keep (graph.py, ``hold_inputs``), reads as a ``GoneInput``: its shape and dtype."""
        return tuple(x.get() if type(x) is WeakInput else x for x in self._held)

    @inputs.setter
    def inputs(self, tensors):
        self._held = tensors

    def forward(self, *xs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, *gys):
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def release(self):
        """Drop the arrays saved by ``forward``; a later backward through this node raises."""
        for k in getattr(self, "_saved", ()):
            self.__dict__.pop(k, None)
        self._saved = ()
        self._freed = True

    def __repr__(self):
        return f"<{type(self).__name__}>"


def _as_tensor_like(value, inputs):
    """Non-tensor inputs of ``Function.apply`` become constants matching the first tensor input."""
    return as_tensor(value, like=next((x for x in inputs if isinstance(x, Tensor)), None))


def as_tensor(value, like=None):
    """``value`` as a constant Tensor (tensors pass through unchanged).

    Python scalars and 0-d arrays take the dtype and device of the tensor ``like`` when both are numbers of
    a kind that mixes without loss (a float32 tensor times ``2.5`` stays float32: no silent upcast); an
    integer array meeting a floating ``like`` takes its dtype too.  Without ``like``, Python floats become
    float32 (as ``tinyconv.tensor``).
    """
    if isinstance(value, Tensor):
        return value
    if like is None:
        arr = value if backend.is_array(value) else np.asarray(value)
        if not backend.is_array(value) and not isinstance(value, np.generic) and arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        return Tensor(arr)
    xp = backend.get_array_module(like.data)
    if type(value) in (float, int) and like.dtype.kind == "f":  # the common ``x * 2.0``, quickly
        return Tensor(xp.array(value, dtype=like.dtype))
    arr = xp.asarray(value)
    scalar = arr.ndim == 0
    if like.dtype.kind == "f" and arr.dtype.kind in "biuf" and (scalar or arr.dtype.kind != "f"):
        arr = arr.astype(like.dtype)
    elif like.dtype.kind in "biu" and arr.dtype.kind in "biu" and scalar:
        arr = arr.astype(like.dtype if like.dtype.kind != "b" or arr.dtype.kind == "b" else np.int64)
    elif like.dtype.kind in "biu" and arr.dtype.kind == "f" and scalar and not isinstance(value, np.ndarray):
        arr = arr.astype(np.float32)  # an integer tensor times a Python float computes in float32
    return Tensor(arr)


def _check_same_device(op, tensors):
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        where = ", ".join(f"input {i} {tuple(t.shape)} on '{t.device}'"
                          for i, t in enumerate(tensors) if t is not None)
        raise RuntimeError(f"{op}: expected all tensors on the same device, got {where}")


class _Size(int):
    """The element count (``x.size``, as NumPy) that also answers PyTorch's ``x.size()`` and ``x.size(dim)``."""

    def __new__(cls, n, shape):
        obj = super().__new__(cls, int(n))
        obj.shape = tuple(shape)
        return obj

    def __call__(self, dim=None):
        return self.shape if dim is None else self.shape[dim]


class _HookHandle:
    """Returned by a hook registration; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks, hook):
        self.hooks, self.id = hooks, _HookHandle._next_id
        _HookHandle._next_id += 1
        hooks[self.id] = hook

    def remove(self):
        self.hooks.pop(self.id, None)


def queue_callback(fn):
    """Run ``fn()`` once the backward pass now running has finished (PyTorch's
    ``Variable._execution_engine.queue_callback``); only valid inside a backward pass (from a hook)."""
    queue = _callbacks.get()
    if queue is None:
        raise RuntimeError("queue_callback: no backward pass is running")
    queue.append(fn)


class Tensor:
    """An n-dimensional array with automatic differentiation.

    ``data`` is the backend array, ``grad`` the accumulated gradient (a ``Tensor`` or ``None``).
    Operators and methods (``+ - * / @ **``, indexing, ``sum``, ``reshape``, ...) are defined in
    ``tinyconv.functions`` (one module per family) and attached to this class by ``functions/methods.py``.
    """

    __array_priority__ = 1000  # make ``ndarray * Tensor`` call Tensor.__rmul__
    _grad_hooks = None  # {id: hook} once register_post_accumulate_grad_hook was called

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        if not backend.is_array(data):
            data = np.asarray(data)
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None
        self._out_index = 0
        self._retain_grad = False
        self._v = 0
        self._weak_uses = None  # the WeakInputs of the functions that read this tensor (graph.py)

    @property
    def _version(self):
        """Bumped by every in-place write (``x[i] = v``, ``zero_``): a function that saved this tensor's
        memory refuses to back-propagate once it changed."""
        return self._v

    @_version.setter
    def _version(self, v):
        self._v = v
        if self._weak_uses:
            mark_written(self._weak_uses, v, self.data)

    # -- array facts --------------------------------------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: _Size(self.data.size, self.data.shape))
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self._ctx is None)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __bool__(self):
        return bool(self.data)  # NumPy's rule: only one-element tensors have a truth value

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def dim(self):
        """The number of dimensions (PyTorch's spelling of ``ndim``)."""
        return self.data.ndim

    def numel(self):
        """The number of elements."""
        return int(self.data.size)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        dev = "" if self.device == "cpu" else f", device='{self.device}'"
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        return f"tensor({body}{dev}{grad})" if self.dtype == np.float32 else \
            f"tensor({body}, dtype={self.dtype}{dev}{grad})"

    # -- conversion -------------------------------------------------------------------------------------
    def numpy(self):
        """The data as a NumPy array on the host (a copy for GPU tensors)."""
        return backend.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(tensor)``: the data on the host (no gradient)."""
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        """The data as (nested) Python lists."""
        return self.numpy().tolist()

    def detach(self):
        """A tensor sharing the data, cut from the graph."""
        return Tensor(self.data)

    def to(self, device=None, dtype=None):
        """Move to ``'cpu'`` or ``'cuda'`` and/or cast (differentiable); ``x.to(tinyconv.float64)`` casts."""
        is_device = isinstance(device, str) or isinstance(getattr(device, "type", None), str)
        if device is not None and not is_device:  # x.to(tinyconv.float64)
            device, dtype = None, device
        out = self
        if dtype is not None and np.dtype(dtype) != self.dtype:
            out = out.astype(dtype)
        if device is not None and backend.normalize_device(device) != self.device:
            out = _ToDevice.apply(out, device=backend.normalize_device(device))
        return out

    def cpu(self):
        """``to('cpu')``."""
        return self.to("cpu")

    def cuda(self):
        """``to('cuda')``."""
        return self.to("cuda")

    def requires_grad_(self, flag=True):
        """Set ``requires_grad`` in place (a leaf starts or stops collecting ``.grad``); returns self."""
        self.requires_grad = flag
        return self

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` each time a backward pass has added a gradient into this leaf's ``.grad``
        (PyTorch's name).  Returns a handle whose ``remove()`` unregisters it.  Data-parallel training uses it
        to start reducing a bucket of gradients while the rest of the backward pass runs."""
        if self._ctx is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors accumulate a .grad")
        if self._grad_hooks is None:
            self._grad_hooks = {}
        return _HookHandle(self._grad_hooks, hook)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward."""
        self._retain_grad = True
        return self

    def zero_(self):
        """Fill the data with zeros in place (not recorded by autograd); returns self."""
        self.data[...] = 0
        self._version += 1
        return self

    def _adopt_history(self, out):
        """Make this tensor stand for ``out`` in the graph (an in-place write: ``x[index] = value`` is recorded
        as ``out = SetItem(x, value)``, and x, which now holds out's values, takes out's place)."""
        self._ctx, self._out_index, self.requires_grad = out._ctx, 0, True

    # -- backward -----------------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Back-propagate from this tensor, accumulating into the ``.grad`` of leaves that require it.

        ``grad`` is the gradient of some scalar with respect to this tensor; it may be omitted only for a
        one-element tensor (it is then 1).  The buffers saved by the functions of the graph are released
        afterwards unless ``retain_graph=True``.
        """
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad and has no grad_fn "
                               "(was it created under no_grad(), or from inputs without requires_grad?)")
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward(): grad can be implicitly created only for scalar outputs, "
                                   f"got a tensor of shape {self.shape}; pass grad= of the same shape")
            g = xp.ones_like(self.data)
        else:
            g = xp.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if g.shape != self.data.shape:
                raise ValueError(f"backward(): grad has shape {tuple(g.shape)}, expected {self.shape}")
        callbacks = []
        token = _callbacks.set(callbacks)
        try:
            self._backward(g, retain_graph)
        finally:
            _callbacks.reset(token)
        for fn in callbacks:  # queued by hooks during the pass (data-parallel gradient reduction)
            fn()

    def _backward(self, g, retain_graph):
        if self._ctx is None:
            _accumulate(self, g)
            return
        # grads[f]: gradients of f's outputs, summed over all consumers seen so far
        grads = {self._ctx: [None] * len(self._ctx.out_meta)}
        grads[self._ctx][self._out_index] = g
        ownership = GradOwnership(g)
        for f in topological_order(self._ctx):
            gys = output_grads(f, grads.pop(f))
            if f.output_grads is not None:
                f.output_grads.update(enumerate(gys))
            ownership.seen(gys)
            check_versions(f)
            gxs = input_grads(f, f.backward(*gys))
            for x, (ctx, i), gx in gxs:
                if ctx is None or (x._retain_grad and x._ctx is ctx):  # a leaf, or a tensor that keeps .grad
                    _accumulate(x, gx, own=ctx is None and ownership.may_own(f, gx))
                ownership.seen([gx])
                if ctx is not None:  # dL/dx adds up over every consumer of x
                    slot = grads.setdefault(ctx, [None] * len(ctx.out_meta))
                    slot[i] = gx if slot[i] is None else slot[i] + gx
            if not retain_graph:
                f.release()
                f.inputs = f.edges = ()  # cut the graph, so the freed part can be collected


def _accumulate(t, g, own=False):
    """Add gradient ``g`` into ``t.grad``, always a new array (``g`` itself when ``own``: nobody else holds it;
    otherwise a copy, since ``g`` may be shared with other gradients and ``.grad`` may be changed in place)."""
    if t.grad is None:
        # a copy in C order: a gradient computed as a transposed view (a convolution's dW) becomes a plain
        # array, which optimisers update in one flat pass
        t.grad = Tensor(g if own and g.dtype == t.dtype else g.astype(t.dtype, order="C", copy=True))
    else:
        t.grad = Tensor(t.grad.data + g)
    if t._grad_hooks:
        for hook in list(t._grad_hooks.values()):
            hook(t)


class _ToDevice(Function):
    """Copy between host and GPU; the gradient goes back the other way."""

    def forward(self, x):
        self.src = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, gy):
        return backend.to_device(gy, self.src)
