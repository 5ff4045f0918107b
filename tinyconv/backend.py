"""Array backends, devices, kernel dispatch and random numbers.

This is the only tinyconv module that imports CuPy or the kernels package (``kernels/`` in the source tree,
installed as ``tinyconv_kernels``).  Both are imported lazily, on first use, so ``import tinyconv`` stays
fast and works without either.

Devices are ``'cpu'`` (NumPy arrays) and ``'cuda'`` (CuPy arrays).  ``get_array_module(x)`` returns the
module that operates on ``x``, so an op written as ``xp = get_array_module(x); xp.exp(x)`` runs on both.

Kernel dispatch: ``get_kernel(name, x)`` returns the implementation of kernel ``name`` for ``x``'s device:
the CUDA kernel for CuPy arrays; for NumPy arrays the Numba-JIT kernel, or the plain NumPy reference when
``TINYCONV_KERNELS=numpy`` is set (or ``use_kernels('numpy')`` is active).  All three share one signature.
"""
import contextlib
import contextvars
import functools
import os

import numpy as np

from . import cuda_bridge

_cupy = None
_cupy_checked = False


def cupy_or_none():
    """The ``cupy`` module if it imports, else ``None`` (checked once)."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy
            _cupy = cupy
        except Exception:  # ImportError, or a CUDA library that fails to load
            _cupy = None
    return _cupy


_cuda_available = None


def cuda_is_available():
    """True when CuPy imports and sees at least one CUDA device (checked once; ``tinyconv.cuda.is_available``)."""
    global _cuda_available
    if _cuda_available is None:
        cp = cupy_or_none()
        try:
            _cuda_available = cp is not None and cp.cuda.runtime.getDeviceCount() > 0
        except Exception:  # no driver, no device, broken CUDA install
            _cuda_available = False
    return _cuda_available


_cupy_types = {np.ndarray: False}  # type -> whether CuPy defines it (looked up at every op: found once a type)


def _is_cupy(x):
    t = type(x)
    found = _cupy_types.get(t)
    if found is None:
        found = _cupy_types[t] = t.__module__.startswith("cupy")
    return found


def is_array(x):
    """True for a NumPy or CuPy array."""
    return isinstance(x, np.ndarray) or _is_cupy(x)


def get_array_module(x):
    """``numpy`` or ``cupy``, whichever operates on ``x`` (a Tensor or an array)."""
    data = x if _is_cupy(x) else getattr(x, "data", x)  # a Tensor: its array (a CuPy array's .data is memory)
    if _is_cupy(data):
        return cupy_or_none()
    return np


def device_of(x):
    """``'cuda'`` for a CuPy array, ``'cpu'`` for anything else."""
    return "cuda" if _is_cupy(x) else "cpu"


def normalize_device(device):
    """``'cpu'``, ``'cuda'``, ``'cuda:0'`` -> ``'cpu'`` or ``'cuda'``; anything else is an error."""
    name = str(getattr(device, "type", device)).split(":")[0]
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")
    return name


def xp_for(device):
    """The array module of a device; ``'cuda'`` without a usable GPU raises a clear error."""
    if normalize_device(device) == "cpu":
        return np
    if not cuda_is_available():
        raise RuntimeError("device 'cuda' requested, but CUDA is not available: install CuPy "
                           "(pip install -e '.[cuda]') on a machine with an NVIDIA GPU")
    return cupy_or_none()


def to_device(x, device):
    """Copy array ``x`` to ``device`` (no copy if it is already there)."""
    device = normalize_device(device)
    if device_of(x) == device:
        return x
    if device == "cpu":
        return x.get()
    return xp_for("cuda").asarray(x)


def to_numpy(x):
    """``x`` as a NumPy array (copied from the GPU when it lives there)."""
    return x.get() if _is_cupy(x) else np.asarray(x)


def scatter_add(target, index, values):
    """``target[index] += values`` in place, adding (not overwriting) where ``index`` repeats an element."""
    if _is_cupy(target):
        import cupyx
        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


# -- kernels ------------------------------------------------------------------------------------------
_KERNEL_MODES = ("auto", "numba", "numpy")
_env_mode = os.environ.get("TINYCONV_KERNELS", "auto").lower()
if _env_mode not in _KERNEL_MODES:
    raise ValueError(f"TINYCONV_KERNELS={_env_mode!r}: expected one of {', '.join(_KERNEL_MODES)}")
# context-local like grad mode: use_kernels in one thread (or asyncio task) never changes another's kernels
_kernel_mode = contextvars.ContextVar("tinyconv_kernel_mode", default=_env_mode)


def kernel_mode():
    """The CPU kernel choice in force here: ``'auto'``, ``'numba'`` or ``'numpy'``."""
    return _kernel_mode.get()


@contextlib.contextmanager
def use_kernels(mode):
    """Force the CPU kernel implementation inside the block, in this thread/context only: ``'numpy'`` (the
    plain references, no chunking, no helper threads) or ``'numba'``/``'auto'``."""
    if mode not in _KERNEL_MODES:
        raise ValueError(f"unknown kernel mode {mode!r}: expected one of {', '.join(_KERNEL_MODES)}")
    token = _kernel_mode.set(mode)
    try:
        yield
    finally:
        _kernel_mode.reset(token)


@contextlib.contextmanager
def conv_algorithm(name):
    """Compute convolutions inside the block with one algorithm, in this thread/context only (for teaching and
    comparing): ``'naive'`` (the loops of the definition), ``'im2col'`` (im2col + GEMM), ``'winograd'``
    (F(2x2, 3x3): 3x3 stride-1 layers only), ``'winograd4'`` (F(4x4, 3x3): the same layers, fewer
    multiplications, a larger float32 error), ``'kn2row'`` (stride-1 layers, the products on the output's
    side: fewer copies when fewer maps come out than go in), ``'direct'`` (the direct depthwise/grouped kernels) or
    ``'auto'`` (the default: per layer, the algorithm measured fastest).  A layer the algorithm cannot compute
    raises ``ValueError``.  ``TINYCONV_CONV_ALGO`` sets the default.  The algorithms agree up to rounding."""
    from tinyconv_kernels import conv_algorithms
    token = conv_algorithms.request(name)
    try:
        yield
    finally:
        conv_algorithms.restore(token)


_cuda_wrappers = {}
_cpu_wrappers = {}


def kernel_target(x):
    """Which implementation of a kernel runs on array ``x`` here: ``'cuda'`` for a CuPy array, else ``'numpy'``
    under ``use_kernels('numpy')`` / ``TINYCONV_KERNELS=numpy``, else ``'cpu'`` (the Numba kernels)."""
    if _is_cupy(x):
        return "cuda"
    return "numpy" if _kernel_mode.get() == "numpy" else "cpu"


def get_kernel(name, x):
    """The implementation of kernel ``name`` for array ``x``: the one place that picks device and algorithm.

    The rules, in order:

    - inside ``shape_only()`` (``tinyconv.summary``), the kernel's ``shape`` twin: it records the
      multiply-accumulates and returns zeros of the output's shape (only the expensive kernels have one);
    - the implementation for ``kernel_target(x)``: ``_cuda`` (wrapped by ``cuda_kernel`` so that it takes and
      returns CuPy arrays), ``_cpu`` (Numba, run under the thread policy of ``kernels/threads.py``: small
      kernels on one thread), or ``_numpy`` (the reference);
    - a kernel without that twin runs its NumPy reference: plain array code, which CuPy evaluates as well
      (references written over an array module take it as ``xp``: they get CuPy, ``kernels.TAKES_XP``);
    - a composite kernel (built from other kernels and array calls, such as ``conv2d_forward``; its
      implementations take the keywords ``xp`` and ``kernel``) is handed ``xp``, the array module of ``x``, and
      ``kernel``, which returns the primitives for the same target: the reference's im2col under
      ``TINYCONV_KERNELS=numpy``, the Numba one on the CPU, the CUDA one on the GPU.
    """
    target = kernel_target(x)
    if _macs.get() is not None:
        shape = _shape_twin(name, target)
        if shape is not None:
            return shape
    cache = _cuda_wrappers if target == "cuda" else _cpu_wrappers
    key = (name, target)  # found once: ops ask for their kernels on every call
    if key not in cache:
        cache[key] = _implementation(name, target)
    return cache[key]


def _implementation(name, target):
    import tinyconv_kernels
    try:
        fn = tinyconv_kernels.get(name, target)
    except NotImplementedError:  # no twin for this target: the NumPy reference, on whatever arrays it gets
        fn, target = tinyconv_kernels.get(name, "numpy"), "numpy" if target != "cuda" else "reference-on-cuda"
    on_gpu = target in ("cuda", "reference-on-cuda")
    if on_gpu and name in cuda_bridge.GEMM_KERNELS:  # its cuBLAS products follow tinyconv.cuda.allow_tf32
        return cuda_bridge.gemm_precision(_implementation_of(fn, name, target))
    return _implementation_of(fn, name, target)


def _implementation_of(fn, name, target):
    import tinyconv_kernels
    if tinyconv_kernels.is_composite(name):
        xp = cupy_or_none() if target in ("cuda", "reference-on-cuda") else np
        primitives = "cuda" if xp is not np else target
        return functools.partial(fn, xp=xp, kernel=lambda primitive: _primitive(primitive, primitives))
    if target == "reference-on-cuda" and tinyconv_kernels.takes_xp(name):  # written over xp: run it on CuPy
        return functools.partial(fn, xp=cupy_or_none())
    if target == "cuda":
        return cuda_kernel(fn)
    if target == "cpu":
        import tinyconv_kernels.threads
        return tinyconv_kernels.threads.sized(fn)
    return fn


def _primitive(name, target):
    """``get_kernel`` for a target rather than an array (composite kernels call it from helper threads, where
    the caller's ``use_kernels`` context is not in force: the target was fixed when the composite was found)."""
    cache = _cuda_wrappers if target == "cuda" else _cpu_wrappers
    if (name, target) not in cache:
        cache[(name, target)] = _implementation(name, target)
    return cache[(name, target)]


def _shape_twin(name, target):
    """Kernel ``name``'s stand-in under ``shape_only()``: counts its MACs, returns zeros; None if it has none."""
    import tinyconv_kernels
    try:
        shape = tinyconv_kernels.get(name, "shape")
    except NotImplementedError:
        return None
    xp = cupy_or_none() if target == "cuda" else np

    def run(*args, **kwargs):
        macs, out = shape(*args, xp=xp, **kwargs)
        count_macs(macs)
        return out
    return run


def reference_kernel(name):
    """The NumPy reference of kernel ``name``: plain array expressions, which also run on CuPy arrays."""
    import tinyconv_kernels
    return tinyconv_kernels.get(name, "numpy")


def cpu_threads():
    """The CPU thread policy (``tinyconv_kernels.threads``): what ``tinyconv.threads`` hands the user."""
    import tinyconv_kernels.threads
    return tinyconv_kernels.threads


def kernel_families():
    """``({kernel name: family module}, folder of the kernels package)``, importing no kernel (for
    ``tinyconv.kernels_compiled``); ``({}, None)`` without the kernels package."""
    try:
        import tinyconv_kernels
    except ImportError:
        return {}, None
    return ({name: family for name, family in tinyconv_kernels.FAMILIES.items()
             if family not in tinyconv_kernels.UNCOMPILED_FAMILIES}, os.path.dirname(tinyconv_kernels.__file__))


def cuda_kernel(fn):
    """Wrap a ``numba.cuda`` kernel function so that it takes and returns CuPy arrays, without copies or waits
    (``cuda_bridge.cuda_kernel``, which documents how)."""
    return cuda_bridge.cuda_kernel(fn, cupy_or_none)


def cupy_memory_manager():
    """The EMM plugin class that serves Numba's device allocations from CuPy's memory pool (``cuda_bridge``)."""
    return cuda_bridge.cupy_memory_manager(cupy_or_none())


# -- shape-only mode (model summaries) ------------------------------------------------------------------
class _MacCounter:
    """Multiply-accumulates recorded by the expensive ops while ``shape_only()`` is active."""

    def __init__(self):
        self.total = 0


_macs = contextvars.ContextVar("tinyconv_shape_only", default=None)  # context-local, like grad mode


@contextlib.contextmanager
def shape_only():
    """Propagate shapes without the arithmetic: inside, convolutions record their multiply-accumulates
    (``count_macs``) and return zeros of the right shape instead of computing; matrix products record theirs
    too.  Yields the counter (``.total``).  Used by ``tinyconv.summary``; run the model under ``no_grad``.
    The mode is context-local (a ``contextvars`` variable): other threads keep computing for real.
    """
    counter = _MacCounter()
    token = _macs.set(counter)
    try:
        yield counter
    finally:
        _macs.reset(token)


def is_shape_only():
    """True inside ``shape_only()`` (in this thread/context): expensive ops may return zeros of the output shape."""
    return _macs.get() is not None


def count_macs(n):
    """Add ``n`` multiply-accumulates to the active ``shape_only()`` counter (no-op outside it)."""
    counter = _macs.get()
    if counter is not None:
        counter.total += int(n)


# -- random numbers -----------------------------------------------------------------------------------
_seed = None
_host_rng = np.random.default_rng()
_cuda_rng = None
_device_root = None    # the root of the GPU streams: the seed, or one number drawn from the host
_device_stream = None  # set by seed_device_rng: the GPU generator restarts from (root, stream)


def manual_seed(seed):
    """Seed every random stream of tinyconv (initialisation, dropout, shuffling defaults).

    Initial weights are drawn on the host and then moved, so one seed gives the same weights on CPU and
    GPU; dropout masks on a GPU come from CuPy's generator seeded from the same number.
    """
    global _seed, _host_rng, _cuda_rng, _device_root, _device_stream
    _seed = int(seed)
    _host_rng = np.random.default_rng(_seed)
    _cuda_rng, _device_root, _device_stream = None, None, None


def host_rng():
    """The global NumPy ``Generator`` behind initialisation and CPU dropout."""
    return _host_rng


def rng_for(xp):
    """A random generator producing arrays of module ``xp`` (NumPy or CuPy)."""
    global _cuda_rng, _device_root
    if xp is np:
        return _host_rng
    if _cuda_rng is None:
        if _device_root is None:
            _device_root = _seed if _seed is not None else int(_host_rng.integers(2**63))
        seed = _device_root if _device_stream is None else \
            int(np.random.SeedSequence([_device_root, _device_stream]).generate_state(1, np.uint64)[0])
        _cuda_rng = xp.random.default_rng(seed)
    return _cuda_rng


def seed_device_rng(stream):
    """Restart the GPU generator from (the root seed, ``stream``), without touching the host's.

    CuPy's generator state cannot be saved, so ``train.fit`` calls this at the start of every epoch with
    the epoch number: an epoch's dropout masks on a GPU then depend only on the seed and the epoch, and a
    run resumed from a checkpoint draws the same masks as the uninterrupted run.
    """
    global _cuda_rng, _device_stream
    _cuda_rng, _device_stream = None, int(stream)


def get_rng_state():
    """A picklable snapshot of the random state (for checkpoints): the host generator, and the root of the
    GPU streams."""
    return {"seed": _seed, "bit_generator": _host_rng.bit_generator.state, "device_root": _device_root}


def set_rng_state(state):
    """Restore the random state from ``get_rng_state()``."""
    global _seed, _device_root, _cuda_rng
    _seed = state.get("seed")
    _device_root, _cuda_rng = state.get("device_root", _seed), None
    _host_rng.bit_generator.state = state["bit_generator"]
