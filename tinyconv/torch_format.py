"""Reading PyTorch's ``.pth``/``.pt`` files without PyTorch: tensors come back as NumPy arrays.

A ``torch.save`` file is a pickle whose tensors point ("persistent ids") at raw storages:

* the zip format (PyTorch >= 1.6): ``<name>/data.pkl`` is the pickle, ``<name>/data/<key>`` holds storage
  ``key``'s bytes, ``<name>/byteorder`` says ``little`` or ``big``;
* the legacy format (older files, and ``_use_new_zipfile_serialization=False``): four pickles in a row
  (magic number, protocol version, system info, the object) then the list of storage keys and, per key,
  an 8-byte element count followed by the raw bytes.

A pickle can name any importable callable and call it while loading: ``torch.load(weights_only=False)`` on a
hostile file runs the attacker's code.  ``TorchUnpickler`` therefore resolves only the few globals a state
dict needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and its relatives, the storage
and dtype names) to local NumPy stand-ins, and refuses every other one with ``UnsafePickleError`` before
anything is called.  ``torch`` itself is never imported.

A tensor is ``(storage, offset, size, stride)`` in elements: the array is ``as_strided`` over the storage
(bounds checked, so a corrupt file cannot read past its storage) and copied, so views of one storage do not
share memory afterwards.  ``bfloat16`` (which NumPy lacks) is widened to ``float32`` exactly.
"""
import io
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np

from .checkpoint import CheckpointError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
BFLOAT16 = "bfloat16"  # NumPy has no bfloat16: stored as uint16, widened after reading

# torch.<Name>Storage and torch.<dtype> -> NumPy dtype
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": BFLOAT16, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64, "ComplexDoubleStorage": np.complex128, "UntypedStorage": np.uint8,
}
DTYPES = {
    "float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16, "bfloat16": BFLOAT16, "int64": np.int64, "long": np.int64,
    "int32": np.int32, "int": np.int32, "int16": np.int16, "short": np.int16, "int8": np.int8,
    "uint8": np.uint8, "bool": np.bool_, "complex64": np.complex64, "complex128": np.complex128,
}


class UnsafePickleError(CheckpointError):
    """The file's pickle names a global that a state dict never needs; nothing in it was run."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only carries the element dtype."""

    def __init__(self, dtype):
        self.dtype = dtype


class _DType:
    """Stand-in for ``torch.float32`` & co."""

    def __init__(self, dtype):
        self.dtype = dtype


class _Storage:
    """One raw storage: its dtype, element count, and (once read) its flat array."""

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel, self.array = key, dtype, numel, None

    def read(self, raw, byteorder="little"):
        dt = np.dtype(np.uint16 if self.dtype == BFLOAT16 else self.dtype)
        if byteorder == "big":
            dt = dt.newbyteorder(">")
        if len(raw) < self.numel * dt.itemsize:
            raise CheckpointError(f"storage {self.key} is truncated: {len(raw)} bytes for {self.numel} "
                                  f"elements of {dt}")
        self.array = np.frombuffer(raw, dtype=dt, count=self.numel)


class _LazyTensor:
    """A tensor whose storage is read after the pickle (legacy files); ``materialize`` builds the array."""

    def __init__(self, storage, offset, size, stride, dtype=None):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)
        self.dtype = dtype

    def materialize(self):
        flat = self.storage.array
        if self.dtype is not None and self.dtype != self.storage.dtype:   # an untyped (byte) storage
            flat = flat.view(np.uint16 if self.dtype == BFLOAT16 else self.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        if self.offset < 0 or any(s < 0 for s in self.stride) or (0 not in self.size and last >= flat.size):
            raise CheckpointError(f"a tensor of size {self.size}, stride {self.stride}, offset {self.offset} "
                                  f"lies outside its storage of {flat.size} elements: the file is corrupt")
        item = flat.itemsize
        a = np.lib.stride_tricks.as_strided(flat[self.offset:], self.size,
                                            tuple(s * item for s in self.stride))
        a = np.array(a, dtype=a.dtype.newbyteorder("="))
        if (self.dtype or self.storage.dtype) == BFLOAT16:
            a = (a.astype(np.uint32) << 16).view(np.float32)
        return a


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride, dtype.dtype if isinstance(dtype, _DType) else None)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _allowed(module, name):
    """The stand-in for an allowed global, or None."""
    if (module, name) == ("collections", "OrderedDict"):
        return OrderedDict
    if module == "torch._utils":
        return {"_rebuild_tensor": _rebuild_tensor, "_rebuild_tensor_v2": _rebuild_tensor,
                "_rebuild_tensor_v3": _rebuild_tensor_v3, "_rebuild_parameter": _rebuild_parameter,
                "_rebuild_parameter_with_state": _rebuild_parameter}.get(name)
    if module == "torch" and name in STORAGE_DTYPES:
        return _StorageType(STORAGE_DTYPES[name])
    if module == "torch" and name in DTYPES:
        return _DType(DTYPES[name])
    return None


class TorchUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds tensors as NumPy arrays and refuses every global a state dict does not use.

    ``storage(key, dtype, numel)`` is called for each persistent id and returns a ``_Storage``.
    """

    def __init__(self, file, storage, source):
        super().__init__(file)
        self._storage, self._source = storage, source

    def find_class(self, module, name):
        obj = _allowed(module, name)
        if obj is None:
            raise UnsafePickleError(f"{self._source}: refusing to load the global {module}.{name}: a PyTorch "
                                    f"state dict never needs it, and unpickling it could run code. Only "
                                    f"tensors, numbers, strings and (Ordered)dicts/lists/tuples are read.")
        return obj

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"{self._source}: unknown persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, (_StorageType, _DType)):
            raise UnsafePickleError(f"{self._source}: a storage of unknown type {storage_type!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError(f"{self._source}: storage views (pre-1.0 PyTorch files) are not supported")
        return self._storage(str(key), storage_type.dtype, int(numel))


def _materialize(obj):
    """Replace every ``_LazyTensor`` in a nested dict/list/tuple by its array."""
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _materialize(obj[k])
        return obj
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    return obj


def is_torch_zip(names):
    """Whether a zip's member names look like ``torch.save``'s: one ``<name>/data.pkl``."""
    return any(n.endswith("/data.pkl") or n == "data.pkl" for n in names)


def load_zip(path, zf):
    """Read the zip-format ``torch.save`` file ``path`` (an open ``ZipFile``)."""
    pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
    prefix = pkl[: -len("data.pkl")]
    names = set(zf.namelist())
    byteorder = zf.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
    storages = {}

    def storage(key, dtype, numel):
        if key not in storages:
            member = f"{prefix}data/{key}"
            if member not in names:
                raise CheckpointError(f"{path}: storage {key} is missing from the archive")
            storages[key] = s = _Storage(key, dtype, numel)
            s.read(zf.read(member), byteorder)
        return storages[key]

    return _materialize(TorchUnpickler(io.BytesIO(zf.read(pkl)), storage, path).load())


def load_legacy(path, f):
    """Read a legacy (non-zip) ``torch.save`` file ``path`` from the open binary file ``f``."""
    def plain(what):
        # the three header pickles hold only numbers and a dict of them: no globals at all
        return TorchUnpickler(f, lambda *a: None, f"{path} ({what})").load()

    if plain("magic number") != LEGACY_MAGIC:
        raise CheckpointError(f"{path} is not a PyTorch file (wrong magic number)")
    if plain("protocol version") != 1001:
        raise CheckpointError(f"{path}: unsupported legacy PyTorch protocol version")
    info = plain("system info")
    if not (isinstance(info, dict) and info.get("little_endian", True)):
        raise CheckpointError(f"{path}: big-endian legacy PyTorch files are not supported")
    storages = {}

    def storage(key, dtype, numel):
        return storages.setdefault(key, _Storage(key, dtype, numel))

    result = TorchUnpickler(f, storage, path).load()
    keys = plain("storage keys")
    for key in keys:
        s = storages.get(str(key))
        head = f.read(8)
        if s is None or len(head) < 8:
            raise CheckpointError(f"{path} is truncated or corrupt (storage {key})")
        (numel,) = struct.unpack("<q", head)
        itemsize = 2 if s.dtype == BFLOAT16 else np.dtype(s.dtype).itemsize
        s.numel = numel
        s.read(f.read(numel * itemsize))
    return _materialize(result)


def load(path):
    """Read a ``torch.save`` file (zip or legacy) into nested dicts/lists of NumPy arrays."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return load_zip(path, zf)
        with open(path, "rb") as f:
            return load_legacy(path, f)
    except CheckpointError:
        raise
    except Exception as e:  # EOFError, UnpicklingError, zipfile.BadZipFile, KeyError, struct.error, ...
        raise CheckpointError(f"{path} cannot be read as a PyTorch file: it is truncated or corrupt "
                              f"({type(e).__name__}: {e})") from None
