"""A strict stand-in for CuPy, so tinyconv's GPU code paths run (and are checked) on a machine without a GPU.

``ndarray`` wraps a NumPy array and forwards the arithmetic to it, but behaves like ``cupy.ndarray`` wherever
CuPy differs from NumPy in a way that hides GPU bugs:

- implicit conversion to NumPy raises (``np.asarray(a)``, ``np.exp(a)``, ``numpy_array + a``), with CuPy's
  message; so does mixing a non-scalar NumPy array into an operation, a function or an assignment;
- reductions and scalar indexing return 0-d arrays, never Python or NumPy scalars;
- the ways to bring data to the host that CuPy allows (``.get()``, ``.item()``, ``.tolist()``, ``float(a)``,
  ``int(a)``, ``bool(a)``, ``if a:``) work but are recorded in ``SYNCS``: on a GPU each one waits for the device
  (a host synchronisation), so a test can assert that a training step makes none;
- ``asarray(numpy_array)`` (a host-to-device copy) is recorded in ``UPLOADS``;
- float32 products (``matmul``, ``dot``, ``@``) round their operands to TF32 where CuPy's switches say so (the
  compute type for 2-D products, the cuBLAS handle's math mode for batched ones), as tensor cores would;
- arrays expose ``__cuda_array_interface__`` (the pointer is the host buffer's), and ``asarray`` accepts any
  object exposing one without copying, as CuPy does; ``numba_sim.py`` makes Numba's CUDA simulator take part
  in that protocol, so the ``numba.cuda`` kernels run on these arrays through tinyconv's real bridge.

The module-level functions (``zeros``, ``matmul``, ``where``, ...) forward to NumPy's function of the same name.
It is a test harness: it does not model CuPy's dtype rules where they equal NumPy's, its random generator
draws different numbers than CuPy's, and it checks nothing about performance.  ``install(monkeypatch)`` makes
tinyconv see it as CuPy and a GPU as present.
"""
import os
import sys
import types
import traceback

import numpy as np

from fake_cublas import _cublas, _device_module, _linalg, _uses_tf32, tf32_round  # noqa: F401  (tests/gpu)

_HERE = os.path.abspath(__file__)
SYNCS = []     # (what, where) for every device-to-host transfer or wait
UPLOADS = []   # (shape, where) for every host-to-device copy

_MESSAGE = ("Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly.")


def _where():
    """The innermost frame outside this file: where tinyconv asked for the transfer."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if os.path.abspath(frame.filename) != _HERE:
            return f"{frame.filename}:{frame.lineno} ({frame.name})"
    return "?"


def _record_sync(what):
    SYNCS.append((what, _where()))


def _reject_host_array(value):
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TypeError(f"Unsupported type {type(value)} (a NumPy array where CuPy needs a cupy.ndarray)")


def _unwrap(value):
    """Fake arrays -> their NumPy buffers (recursively in lists, tuples and dicts); host arrays are refused."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    _reject_host_array(value)
    return value


def _unwrap_index(key):
    """Index keys may be fake arrays, NumPy arrays (CuPy uploads them), slices, ints, None, Ellipsis."""
    if isinstance(key, tuple):
        return tuple(_unwrap_index(k) for k in key)
    return key._a if isinstance(key, ndarray) else key


def _wrap(value):
    """NumPy results -> fake arrays; NumPy scalars -> 0-d fake arrays (CuPy never returns host scalars)."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class ndarray:
    """A device array standing in for ``cupy.ndarray`` (its data lives in host memory, ``self._a``)."""

    __module__ = "cupy"           # what tinyconv.backend checks to recognise a CuPy array
    __array_ufunc__ = None         # numpy_array + fake defers to us (and then fails, as with CuPy)
    __array_priority__ = 100

    def __init__(self, a):
        assert isinstance(a, np.ndarray), type(a)
        self._a = a

    # -- CuPy's explicit transfers (recorded) ----------------------------------------------------------
    def get(self, stream=None, order="C", out=None):
        _record_sync("get")
        return self._a.copy(order=order)

    def item(self):
        _record_sync("item")
        return self._a.item()

    def tolist(self):
        _record_sync("tolist")
        return self._a.tolist()

    def __float__(self):
        _record_sync("float")
        return float(self._a)

    def __int__(self):
        _record_sync("int")
        return int(self._a)

    def __bool__(self):
        _record_sync("bool")
        return bool(self._a)

    def __complex__(self):
        _record_sync("complex")
        return complex(self._a)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_MESSAGE)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (_wrap(self._a[i]) for i in range(len(self._a)))

    # -- the CUDA array interface (host pointer standing in for the device pointer) ----------------------
    @property
    def __cuda_array_interface__(self):
        a = self._a
        return {"shape": a.shape, "typestr": a.dtype.str, "version": 3, "stream": 1,
                "data": (a.ctypes.data if a.size else 0, False),
                "strides": None if a.flags.c_contiguous else a.strides}

    # -- array facts -----------------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    device = property(lambda self: _Device(0))
    data = property(lambda self: _MemoryPointer(self._a.ctypes.data))   # CuPy: the device memory, not values

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return f"fake_cupy.ndarray({np.array2string(self._a)})"

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and value.ndim > 0:
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")  # CuPy's error
        self._a[_unwrap_index(key)] = _unwrap(value)

    def __getattr__(self, name):
        # methods (sum, reshape, astype, transpose, copy, fill, ...) forward to NumPy's, results wrapped;
        # never the protocols (__array_interface__, __array_struct__, ...) through which NumPy would read us
        if name.startswith("__") or name == "ctypes":
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            # an integer NumPy vector as shape/axes is a sequence of ints to CuPy's methods too
            args = [tuple(int(v) for v in a) if isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype.kind in "iu"
                    else a for a in args]
            return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
        return method

    def __deepcopy__(self, memo):
        return ndarray(self._a.copy())

    def __reduce__(self):
        raise TypeError("pickling a device array: move it to the host first (.get())")


def _binary(name):
    def op(self, other):
        if isinstance(other, (list, tuple)):
            raise TypeError(f"Unsupported type {type(other)}")
        return _wrap(getattr(self._a, name)(_unwrap(other)))
    op.__name__ = name
    return op


def _unary(name):
    def op(self):
        return _wrap(getattr(self._a, name)())
    op.__name__ = name
    return op


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "lshift", "rshift"):
    for _form in ("__{}__", "__r{}__", "__i{}__"):
        setattr(ndarray, _form.format(_name), _binary(_form.format(_name)))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(f"__{_name}__"))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__", _unary(f"__{_name}__"))
ndarray.__hash__ = None


class _MemoryPointer:
    """``cupy.cuda.MemoryPointer``: what ``cupy.ndarray.data`` is (an address, not the values)."""
    __module__ = "cupy.cuda.memory"

    def __init__(self, ptr):
        self.ptr = ptr


# -- module functions -------------------------------------------------------------------------------------
class _HostView:
    """Exposes a CUDA-array-interface dict as NumPy's array interface (same layout), keeping its owner alive."""

    def __init__(self, desc, owner):
        self.__array_interface__ = {k: desc[k] for k in ("shape", "typestr", "data", "strides", "version")
                                    if k in desc}
        self.__array_interface__["version"] = 3
        self.owner = owner


def _from_cuda_array_interface(obj):
    desc = obj.__cuda_array_interface__
    if desc.get("mask") is not None:
        raise NotImplementedError("masked arrays are not supported")
    return np.asarray(_HostView(desc, obj))


def asarray(a, dtype=None, order=None, *, blocking=False):
    """CuPy's ``asarray``: device arrays pass through, CUDA-array-interface objects are viewed (no copy),
    host data is uploaded (recorded)."""
    if isinstance(a, ndarray):
        return a if dtype is None else ndarray(a._a.astype(dtype, copy=False))
    if hasattr(a, "__cuda_array_interface__"):
        out = ndarray(_from_cuda_array_interface(a))
        return out if dtype is None else ndarray(out._a.astype(dtype, copy=False))
    host = np.asarray(a, dtype=dtype, order=order)
    if host.dtype == object:
        raise TypeError(f"Unsupported type {type(a)}")
    UPLOADS.append((host.shape, _where()))
    return ndarray(np.array(host, order=order or "C"))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    out = asarray(obj, dtype)
    data = out._a.copy() if copy else out._a
    return ndarray(np.array(data, ndmin=ndmin, copy=False) if ndmin else data)


asanyarray = asarray


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get()
    return np.asarray(a)


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


def _forward(fn, name):
    def function(*args, **kwargs):
        return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))
    function.__name__ = name
    return function


_PASS_THROUGH = (bool, int, float, str, type, np.dtype, type(None), types.ModuleType)


def __getattr__(name):
    """``fake_cupy.<name>``: NumPy's constant or type as is, NumPy's function forwarding to the buffers."""
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(np, name)
    if isinstance(value, _PASS_THROUGH) or not callable(value):
        return value
    return _forward(value, name)


# -- the products: NumPy's, with CuPy's TF32 rule (fake_cublas.py) ---------------------------------------------
def _product(fn, a, b, out, **kwargs):
    """NumPy's product ``fn``, with the operands rounded to TF32 where CuPy's settings ask for it."""
    a, b = _unwrap(a), _unwrap(b)
    if _uses_tf32(a, b):
        a, b = tf32_round(a), tf32_round(b)
    result = fn(a, b, out=None if out is None else out._a, **kwargs)
    return out if out is not None else _wrap(result)


def matmul(a, b, out=None, **kwargs):
    return _product(np.matmul, a, b, out, **kwargs)


def dot(a, b, out=None):
    return _product(np.dot, a, b, out)


ndarray.__matmul__ = lambda self, other: matmul(self, other)
ndarray.__rmatmul__ = lambda self, other: matmul(other, self)
ndarray.dot = lambda self, other, out=None: dot(self, other, out)


# -- fake_cupy.random ---------------------------------------------------------------------------------------
class Generator:
    """``cupy.random.Generator``: the methods CuPy's generator has, drawing on the host (other numbers than
    CuPy's, same seeding contract)."""

    def __init__(self, seed):
        self._g = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64, out=None):
        return ndarray(np.asarray(self._g.random(size, dtype=dtype)))

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return ndarray(np.asarray(self._g.standard_normal(size, dtype=dtype)))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        return ndarray(np.asarray(self._g.integers(low, high, size, dtype=dtype, endpoint=endpoint)))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._g.uniform(low, high, size)).astype(dtype))


random = types.SimpleNamespace(default_rng=Generator)


# -- fake_cupy.cuda ---------------------------------------------------------------------------------------
class _Device:
    def __init__(self, id=0):
        self.id = id

    def synchronize(self):
        _record_sync("synchronize")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Stream:
    ptr = 0  # the legacy default stream, as CuPy's current stream is unless the user picks another

    def synchronize(self):
        _record_sync("stream.synchronize")


cuda = types.SimpleNamespace(
    Device=_Device,
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
    get_current_stream=lambda: _Stream(),
    Stream=types.SimpleNamespace(null=_Stream()),
)


# -- cupyx -------------------------------------------------------------------------------------------------
def _scatter_add(a, slices, value):
    np.add.at(a._a, _unwrap_index(slices), _unwrap(value))


def _special(name):
    if name.startswith("__"):  # module protocols (__file__, __path__, ...): inspect and importers ask for them
        raise AttributeError(name)
    import scipy.special
    return _forward(getattr(scipy.special, name), name)


cupyx = types.ModuleType("cupyx")
cupyx.scatter_add = _scatter_add
cupyx_scipy = types.ModuleType("cupyx.scipy")
cupyx_special = types.ModuleType("cupyx.scipy.special")
cupyx_special.__getattr__ = _special
cupyx.scipy = cupyx_scipy
cupyx_scipy.special = cupyx_special


def install(monkeypatch, kernels="simulator"):
    """Make tinyconv see this module as CuPy with one GPU, and Numba's simulator as its CUDA kernels' runtime
    (``kernels='reference'``: the NumPy references stand in for the kernels, see ``numba_sim.reference_kernels``)."""
    from tinyconv import backend
    module = sys.modules[__name__]
    monkeypatch.setattr(backend, "_cupy", module)
    monkeypatch.setattr(backend, "_cupy_checked", True)
    monkeypatch.setattr(backend, "_cuda_wrappers", {})
    monkeypatch.setattr(backend, "_cuda_rng", None)
    monkeypatch.setattr(backend, "_cuda_available", True)
    _linalg.compute_types.clear()
    _cublas.math_modes.clear()
    for name, mod in (("cupyx", cupyx), ("cupyx.scipy", cupyx_scipy), ("cupyx.scipy.special", cupyx_special),
                      ("cupy._core._routines_linalg", _linalg), ("cupy_backends.cuda.libs.cublas", _cublas),
                      ("cupy.cuda.device", _device_module)):
        monkeypatch.setitem(sys.modules, name, mod)
    import numba_sim  # tests/gpu: it imports this module, so not at the top
    numba_sim.bridge(monkeypatch)
    if kernels == "reference":
        numba_sim.reference_kernels(monkeypatch)
    SYNCS.clear()
    UPLOADS.clear()
    return module
