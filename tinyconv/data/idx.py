"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a header followed by the array in row-major order, big-endian::

    bytes 0-1   0x00 0x00                  magic (always zero)
    byte  2     dtype code                 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     ndim                       number of dimensions (1 for labels, 3 for images)
    4 * ndim    dims                       each a big-endian uint32 (N, then H, W for images)
    ...         data                       prod(dims) * itemsize bytes

MNIST's ``train-images-idx3-ubyte`` starts ``00 00 08 03`` (uint8, 3 dims: 60000 x 28 x 28), its labels file
``00 00 08 01``.  Files are read raw or gzip-compressed; the choice is made from the first two bytes (gzip's
magic ``1f 8b``), not from the file name.  Every check that fails raises :class:`IDXError` naming the file.
"""
import gzip
import math
import os
import zlib

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian NumPy dtype (the format's own table; 0x0A is unassigned).
DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
CODES = {dt.str[1:]: code for code, dt in DTYPES.items()}  # "u1", "f4", ... (either byte order)


class IDXError(ValueError):
    """A file that is not a valid IDX file: wrong magic, unknown dtype code, truncated or oversized data."""


def _read_bytes(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        # A cut-off download ends mid-stream: EOFError; a damaged one fails its CRC or inflate: BadGzipFile/zlib.
        raise IDXError(f"{path}: corrupt or truncated gzip data ({os.path.getsize(path)} bytes on disk): "
                       f"{e}") from e


def parse_idx(buf, name="<bytes>"):
    """The array stored in the IDX bytes ``buf`` (already decompressed); ``name`` is used in errors."""
    if len(buf) < 4:
        raise IDXError(f"{name}: too short for an IDX header: expected at least 4 bytes, got {len(buf)}")
    if buf[0] != 0 or buf[1] != 0:
        raise IDXError(f"{name}: bad magic number: expected the file to start with 00 00, "
                       f"got {buf[0]:02x} {buf[1]:02x} (not an IDX file)")
    code, ndim = buf[2], buf[3]
    if code not in DTYPES:
        known = ", ".join(f"0x{c:02X} {d.name}" for c, d in DTYPES.items())
        raise IDXError(f"{name}: unknown IDX dtype code 0x{code:02X}: expected one of {known}")
    if ndim == 0:
        raise IDXError(f"{name}: IDX header declares 0 dimensions: expected at least 1")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise IDXError(f"{name}: truncated header: expected {header} bytes for {ndim} dimensions, got {len(buf)}")
    shape = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize   # Python ints: 65536**4 must not wrap to 0 in int64
    actual = len(buf) - header
    if actual != expected:
        what = "truncated" if actual < expected else "too long"
        raise IDXError(f"{name}: {what}: the header declares shape {shape} of {dtype.name}, i.e. {expected} bytes "
                       f"of data (file size {header + expected}), but there are {actual} bytes of data "
                       f"(file size {len(buf)})")
    return np.frombuffer(buf, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path, shape=None, dtype=None):
    """Read an IDX file (raw or gzip, detected from its first bytes) into a native-endian NumPy array.

    ``shape`` optionally checks the result: a tuple where ``None`` matches any size, e.g. ``(None, 28, 28)``;
    ``dtype`` checks the stored dtype (e.g. ``np.uint8``).  Raises :class:`IDXError` naming the file and the
    expected and actual values on any mismatch, and ``FileNotFoundError`` if it does not exist.
    """
    path = os.fspath(path)
    arr = parse_idx(_read_bytes(path), name=path)
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise IDXError(f"{path}: expected dtype {np.dtype(dtype).name}, got {arr.dtype.name}")
    if shape is not None:
        ok = len(shape) == arr.ndim and all(s is None or s == a for s, a in zip(shape, arr.shape))
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise IDXError(f"{path}: expected an array of shape {want}, got {arr.shape}")
    return arr


def write_idx(path, array, compress=None):
    """Write ``array`` as an IDX file; gzip-compressed if ``compress`` is true (default: name ends in .gz)."""
    path = os.fspath(path)
    array = np.asarray(array)
    key = array.dtype.str[1:]
    if key not in CODES:
        raise TypeError(f"write_idx: IDX cannot store dtype {array.dtype.name}; expected one of "
                        f"{', '.join(d.name for d in DTYPES.values())}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"write_idx: expected 1 to 255 dimensions, got {array.ndim}")
    code = CODES[key]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        payload = gzip.compress(payload, mtime=0)
    with open(path, "wb") as f:
        f.write(payload)
    return path
