"""Tensor constructors: ``tensor``, ``zeros``, ``ones``, ``full``, ``arange``, ``randn``, ``rand``, ``*_like``.

Floating-point data defaults to float32.  Random tensors are drawn on the host from the generator that
``tinyconv.manual_seed`` seeds and then moved, so a seed gives the same values on every device.
"""
import numpy as np

from . import backend
from .core import Tensor

DEFAULT_DTYPE = np.float32


def _place(arr, device, requires_grad):
    return Tensor(backend.to_device(arr, device) if device not in (None, "cpu") else arr, requires_grad)


def _shape(size):
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else tuple(size)


def tensor(data, dtype=None, requires_grad=False, device="cpu"):
    """A new tensor from a list, scalar or array (copied).  Python floats become float32 unless ``dtype``."""
    if isinstance(data, Tensor):
        data = data.data
    if backend.is_array(data) or isinstance(data, np.generic):  # arrays and NumPy scalars keep their dtype
        arr = np.array(backend.to_numpy(data))
    else:
        arr = np.array(data)
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(DEFAULT_DTYPE)
    if dtype is not None:
        arr = arr.astype(dtype)
    return _place(arr, device, requires_grad)


def from_numpy(arr):
    """A tensor sharing memory with a NumPy array."""
    return Tensor(np.asarray(arr))


def zeros(*size, dtype=DEFAULT_DTYPE, requires_grad=False, device="cpu"):
    """A tensor of zeros; ``size`` as varargs (``zeros(2, 3)``) or one sequence (``zeros((2, 3))``)."""
    return Tensor(backend.xp_for(device).zeros(_shape(size), dtype), requires_grad)


def ones(*size, dtype=DEFAULT_DTYPE, requires_grad=False, device="cpu"):
    """A tensor of ones; ``size`` as in ``zeros``."""
    return Tensor(backend.xp_for(device).ones(_shape(size), dtype), requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False, device="cpu"):
    """A tensor of ``size`` filled with ``fill_value``; the dtype follows the value as in PyTorch
    (bool, int64, or float32 for floats) unless given."""
    if dtype is None:
        kind = np.asarray(fill_value).dtype.kind
        dtype = np.bool_ if kind == "b" else np.int64 if kind in "iu" else DEFAULT_DTYPE
    return Tensor(backend.xp_for(device).full(_shape((size,)), fill_value, dtype), requires_grad)


def empty(*size, dtype=DEFAULT_DTYPE, requires_grad=False, device="cpu"):
    """An uninitialised tensor (layers allocate parameters with it, then call an ``nn.init`` function)."""
    return Tensor(backend.xp_for(device).empty(_shape(size), dtype), requires_grad)


def arange(start, stop=None, step=1, dtype=None, requires_grad=False, device="cpu"):
    """Evenly spaced values in ``[start, stop)`` (``arange(n)`` is ``0 .. n-1``): int64 for integer
    arguments, float32 for floats, unless ``dtype``."""
    arr = np.arange(start, stop, step) if stop is not None else np.arange(0, start, step)
    if dtype is None and arr.dtype == np.float64:
        arr = arr.astype(DEFAULT_DTYPE)
    return _place(arr.astype(dtype) if dtype is not None else arr, device, requires_grad)


def randn(*size, dtype=DEFAULT_DTYPE, requires_grad=False, device="cpu"):
    """Standard normal samples from the seeded host generator."""
    arr = backend.host_rng().standard_normal(_shape(size)).astype(dtype)
    return _place(arr, device, requires_grad)


def rand(*size, dtype=DEFAULT_DTYPE, requires_grad=False, device="cpu"):
    """Uniform samples in [0, 1) from the seeded host generator."""
    arr = backend.host_rng().random(_shape(size)).astype(dtype)
    return _place(arr, device, requires_grad)


def randint(low, high, size, dtype=np.int64, device="cpu"):
    """Integers drawn uniformly from ``[low, high)`` by the seeded host generator."""
    return _place(backend.host_rng().integers(low, high, size=_shape((size,))).astype(dtype), device, False)


def _like(fn):
    def like(x, dtype=None, requires_grad=False, device=None):
        return fn(*x.shape, dtype=dtype or x.dtype, requires_grad=requires_grad, device=device or x.device)
    like.__doc__ = f"``{fn.__name__}`` with the shape, dtype and device of ``x``."
    return like


zeros_like = _like(zeros)
ones_like = _like(ones)
randn_like = _like(randn)
rand_like = _like(rand)
empty_like = _like(empty)


def full_like(x, fill_value, dtype=None, requires_grad=False, device=None):
    """``full`` with the shape, dtype and device of ``x``."""
    return full(x.shape, fill_value, dtype=dtype or x.dtype, requires_grad=requires_grad, device=device or x.device)


def randperm(n, dtype=np.int64, device="cpu"):
    """A random permutation of ``0 .. n-1`` from the seeded host generator."""
    return _place(backend.host_rng().permutation(n).astype(dtype), device, False)


def linspace(start, end, steps, dtype=DEFAULT_DTYPE, requires_grad=False, device="cpu"):
    """``steps`` evenly spaced values from ``start`` to ``end``, both included."""
    return _place(np.linspace(start, end, steps).astype(dtype), device, requires_grad)


def eye(n, m=None, dtype=DEFAULT_DTYPE, requires_grad=False, device="cpu"):
    """The ``n x m`` identity matrix (``m`` defaults to ``n``)."""
    return _place(np.eye(n, m, dtype=dtype), device, requires_grad)


def as_tensor(data, dtype=None, device=None):
    """``data`` as a tensor, without a copy where it already is an array of that dtype on that device."""
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    arr = data.data if isinstance(data, Tensor) else data
    if not backend.is_array(arr):
        return tensor(arr, dtype=dtype, device=device or "cpu")
    arr = arr.astype(dtype, copy=False) if dtype is not None else arr
    return Tensor(backend.to_device(arr, device) if device is not None else arr)
