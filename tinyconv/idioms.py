"""PyTorch's top-level names that are small enough to need no module of their own.

dtype names (``tinyconv.float32``, ``tinyconv.long``, ... as NumPy dtypes; ``float16`` is a storage type
only: the layers refuse it with an error naming float32 and float64, which tinyconv computes in), ``tinyconv.device``, tensor
predicates and comparisons, and ``kernels_compiled``: whether Numba's on-disk cache already holds the CPU kernels
(the first run compiles them, about ten seconds; later runs load them).
"""
import builtins
import glob
import os
import sys

import numpy as np

from . import backend
from .core import Tensor

float32 = float = np.dtype(np.float32)
float64 = double = np.dtype(np.float64)
float16 = half = np.dtype(np.float16)  # a storage type only: layers refuse it, naming float32/float64
int64 = long = np.dtype(np.int64)
int32 = int = np.dtype(np.int32)
uint8 = np.dtype(np.uint8)
bool = np.dtype(np.bool_)


def get_default_dtype():
    """The dtype of floating tensors made from Python numbers: float32."""
    return float32


def device(type, index=None):
    """A device name as tinyconv uses it: ``'cpu'`` or ``'cuda'`` (``device('cuda', 0)`` and ``'cuda:0'``
    are accepted).  tinyconv's devices are plain strings; ``model.to(device)`` and ``x.to(device)`` take them."""
    return backend.normalize_device(type if index is None else f"{type}:{index}")


def is_tensor(obj):
    """True for a tinyconv ``Tensor`` (a ``Parameter`` included)."""
    return isinstance(obj, Tensor)


def numel(x):
    """The number of elements of ``x``."""
    return x.numel()


def allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    """Whether ``|a - b| <= atol + rtol * |b|`` everywhere (``torch.allclose``), as a Python bool."""
    xp = backend.get_array_module(a.data)
    return builtins.bool(xp.allclose(a.data, b.data, rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(a, b):
    """Whether ``a`` and ``b`` have the same shape and elements, as a Python bool."""
    return a.shape == b.shape and builtins.bool((a.data == b.data).all())


def mm(a, b):
    """The matrix product of two 2-d tensors."""
    return a.mm(b)


def bmm(a, b):
    """The batched matrix product of two 3-d tensors ``(B, n, m) @ (B, m, p)``."""
    return a.bmm(b)


def _cache_dirs(package_dir):
    dirs = [os.path.join(package_dir, "__pycache__")]
    if os.environ.get("NUMBA_CACHE_DIR"):
        root = os.environ["NUMBA_CACHE_DIR"]
        dirs.append(os.path.join(root, os.path.abspath(package_dir).lstrip(os.sep)))
    return dirs


def kernels_compiled(*names):
    """Whether Numba's on-disk cache already holds compiled CPU kernels, so the first step will not compile.

    With no arguments: for every kernel family of ``tinyconv_kernels``; with kernel names (``"im2col"``,
    ``"max_pool2d_forward"``, ...): for the families of those kernels.  True under
    ``TINYCONV_KERNELS=numpy`` (nothing is compiled).  Numba writes its cache next to the kernels
    (``__pycache__``) or under ``NUMBA_CACHE_DIR``; a family counts as compiled once any of its kernels is
    cached there for this Python version (a kernel not used before still compiles on first use).

    A training script can say what the first step's wait is::

        if not tinyconv.kernels_compiled():
            print("compiling the Numba kernels (first run only, about 10 s; cached for the next runs)")
    """
    if backend.kernel_mode() == "numpy":
        return True
    families_of, folder = backend.kernel_families()
    if folder is None:
        return True  # no kernels package: the NumPy references run
    unknown = [n for n in names if n not in families_of]
    if unknown:
        raise ValueError(f"kernels_compiled: unknown kernel name(s) {unknown}; known: {sorted(families_of)}")
    families = {families_of[n] for n in names} if names else set(families_of.values())
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    dirs = _cache_dirs(folder)
    # a family's Numba kernels are in <family>.py, or in <family>_cpu.py and the like for a split family
    return all(any(glob.glob(os.path.join(d, f"{fam}{part}.*.{tag}.nbi")) for d in dirs for part in ("", "_*"))
               for fam in families)
