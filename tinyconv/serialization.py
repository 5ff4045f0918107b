"""``tinyconv.save(obj, path)`` and ``tinyconv.load(path)``: PyTorch's idiom, without PyTorch.

``save`` writes tinyconv's own format (the ``.npz`` checkpoint of ``tinyconv.checkpoint``: arrays as NumPy
members, the nested structure as JSON, no pickle), atomically.  ``load`` reads, by content rather than by
file name:

=====================================  ==========================================================
tinyconv's own files (``save``)        the saved structure (Tensors stay Tensors, arrays arrays)
a plain ``.npz`` of arrays             ``{name: array}``
PyTorch ``.pth``/``.pt`` (zip/legacy)  nested dicts of NumPy arrays, read by a restricted unpickler
                                       (``tinyconv.torch_format``) that never imports torch nor runs
                                       code from the file
``.safetensors``                       ``{name: array}`` via the ``safetensors`` package (optional:
                                       ``pip install tinyconv[weights]``)
=====================================  ==========================================================

A state dict from any of them goes straight into ``module.load_state_dict``.
"""
import os
import struct
import zipfile

import numpy as np

from . import checkpoint
from .checkpoint import CheckpointError


def save(obj, f):
    """Save ``obj`` (a state dict, or any nest of dicts/lists/tuples/numbers/strings/Tensors/arrays) to ``f``.

    The file is tinyconv's own (an ``.npz`` with a JSON index; no pickle), written to a temporary file and
    renamed, so an interrupted save never leaves a half-written ``f``.  Read it back with ``load``.
    """
    checkpoint.save(f, obj)


def _is_safetensors(path):
    """safetensors: an 8-byte little-endian header length, then a JSON header starting with ``{``."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return n <= os.path.getsize(path) - 8


def load_safetensors(path):
    """Read a ``.safetensors`` file into ``{name: array}`` with the ``safetensors`` package's NumPy API."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ImportError(f"reading {path} needs the safetensors package: pip install safetensors "
                          "(or tinyconv[weights])") from None
    try:
        return load_file(os.fspath(path))
    except Exception as e:  # SafetensorError, ValueError (bfloat16 has no NumPy dtype), ...
        raise CheckpointError(f"{path} cannot be read as a safetensors file ({type(e).__name__}: {e})") from None


def load(f, map_location=None, weights_only=True):
    """Load what ``save`` wrote, or a PyTorch ``.pth``/``.pt`` file, or a ``.safetensors`` file.

    ``map_location`` is accepted for PyTorch compatibility; everything loads onto the CPU (call ``.to``/
    ``module.cuda()`` afterwards).  ``weights_only=False`` is refused: tinyconv never unpickles arbitrary
    objects.  Raises ``CheckpointError`` naming the file when it is missing, truncated, corrupt or of an
    unknown kind, and ``UnsafePickleError`` (a ``CheckpointError``) when a pickle names anything but tensors
    and containers.
    """
    if not weights_only:
        raise ValueError("tinyconv.load(weights_only=False) is not supported: tinyconv reads only tensors, "
                         "numbers, strings and containers, never arbitrary pickled objects")
    if map_location not in (None, "cpu"):
        raise ValueError(f"tinyconv.load loads onto the CPU; got map_location={map_location!r}: "
                         "move the result afterwards (module.load_state_dict(...); module.cuda())")
    path = os.fspath(f)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} does not exist")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except Exception as e:
            raise CheckpointError(f"{path} is a damaged zip file ({type(e).__name__}: {e})") from None
        if "__meta__.npy" in names:
            return checkpoint.load(path)
        from . import torch_format
        if torch_format.is_torch_zip(names):
            return torch_format.load(path)
        if names and all(n.endswith(".npy") for n in names):
            try:
                with np.load(path, allow_pickle=False) as npz:
                    return {k: npz[k] for k in npz.files}
            except Exception as e:
                raise CheckpointError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
        raise CheckpointError(f"{path} is a zip file but neither a tinyconv, NumPy nor PyTorch file "
                              f"(members: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
    if _is_safetensors(path):
        return load_safetensors(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head[:1] == b"\x80":     # a pickle (protocol >= 2): PyTorch's legacy format
        from . import torch_format
        return torch_format.load(path)
    raise CheckpointError(f"{path} is not a file tinyconv can load: expected a tinyconv checkpoint (.npz), "
                          f"a PyTorch .pth/.pt file or a .safetensors file")


def save_safetensors(state_dict, path, metadata=None):
    """Write ``{name: Tensor or array}`` as a ``.safetensors`` file (atomically), for other frameworks."""
    try:
        from safetensors.numpy import save
    except ImportError:
        raise ImportError("writing safetensors needs the safetensors package: pip install safetensors") from None
    from . import backend
    arrays = {k: np.ascontiguousarray(backend.to_numpy(getattr(v, "data", v))) for k, v in state_dict.items()}
    blob = save(arrays, metadata={str(k): str(v) for k, v in (metadata or {}).items()})
    checkpoint.atomic_write(path, lambda fh: fh.write(blob))

