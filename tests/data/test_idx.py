"""IDX reader/writer: round trips for every dtype, gzip detection by content, and every corruption check."""
import gzip
import re

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinyconv.data.idx import DTYPES, IDXError, parse_idx, read_idx, write_idx


def idx_bytes(code, shape, payload):
    """An IDX file assembled by hand, independently of write_idx."""
    header = bytes([0, 0, code, len(shape)]) + b"".join(int(d).to_bytes(4, "big") for d in shape)
    return header + payload


@pytest.mark.parametrize("code", sorted(DTYPES))
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_every_dtype(tmp_path, code, compress):
    dt = DTYPES[code].newbyteorder("=")
    x = (np.arange(2 * 3 * 5) * 7 % 251).astype(dt).reshape(2, 3, 5)
    path = write_idx(tmp_path / "x.idx", x, compress=compress)
    y = read_idx(path)
    assert y.dtype == dt and y.shape == (2, 3, 5)
    np.testing.assert_array_equal(y, x)


def test_reads_hand_made_big_endian_file(tmp_path):
    values = [1, -2, 300, -40000]
    path = tmp_path / "ints"
    path.write_bytes(idx_bytes(0x0C, (2, 2), b"".join(v.to_bytes(4, "big", signed=True) for v in values)))
    np.testing.assert_array_equal(read_idx(path), np.array(values, dtype=np.int32).reshape(2, 2))


def test_gzip_detected_by_magic_bytes_not_name(tmp_path):
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw = idx_bytes(0x08, (3, 4), x.tobytes())
    (tmp_path / "compressed_without_suffix").write_bytes(gzip.compress(raw))
    (tmp_path / "raw_with_suffix.gz").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed_without_suffix"), x)
    np.testing.assert_array_equal(read_idx(tmp_path / "raw_with_suffix.gz"), x)


def test_write_idx_compresses_by_suffix(tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros(3, np.uint8))
    write_idx(tmp_path / "a", np.zeros(3, np.uint8))
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "a").read_bytes()[:4] == b"\x00\x00\x08\x01"


def test_truncated_raw_file_names_file_and_sizes(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(0x08, (10, 28, 28), bytes(10 * 28 * 28 - 100)))
    with pytest.raises(IDXError) as e:
        read_idx(path)
    msg = str(e.value)
    assert str(path) in msg and "truncated" in msg
    assert str(10 * 28 * 28) in msg and str(10 * 28 * 28 - 100) in msg


def test_too_long_file(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(0x08, (4,), bytes(6)))
    with pytest.raises(IDXError, match=r"too long.*expected|4 bytes.*6 bytes"):
        read_idx(path)


def test_truncated_gzip_names_file(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IDXError, match="corrupt or truncated gzip") as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_corrupt_gzip_payload(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.arange(1000, dtype=np.int32))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip bits inside the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(IDXError, match=str(path).replace("\\", "\\\\")):
        read_idx(path)


@pytest.mark.parametrize("data, match", [
    (b"\x01\x00\x08\x01" + bytes(8), "bad magic number"),
    (b"\x00\x00\x0a\x01" + bytes(8), "unknown IDX dtype code 0x0A"),
    (b"\x00\x00\x08\x00" + bytes(8), "0 dimensions"),
    (b"\x00\x00", "too short"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated header"),
])
def test_header_errors(data, match):
    with pytest.raises(IDXError, match=match):
        parse_idx(data, name="f")


def test_expected_shape_and_dtype_checks(tmp_path):
    path = write_idx(tmp_path / "img.gz", np.zeros((2, 32, 32), np.uint8))
    assert read_idx(path, shape=(None, 32, 32), dtype=np.uint8).shape == (2, 32, 32)
    with pytest.raises(IDXError, match=r"expected an array of shape \(\*, 28, 28\), got \(2, 32, 32\)"):
        read_idx(path, shape=(None, 28, 28))
    with pytest.raises(IDXError, match="expected dtype float32, got uint8"):
        read_idx(path, dtype=np.float32)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(TypeError, match="IDX cannot store dtype int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))


@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4), code=st.sampled_from(sorted(DTYPES)),
       compress=st.booleans())
def test_round_trip_property(tmp_path_factory, shape, code, compress):
    x = (np.arange(int(np.prod(shape))) % 100 - 50).astype(DTYPES[code].newbyteorder("=")).reshape(shape)
    if code == 0x08:
        x = np.abs(x)
    path = write_idx(tmp_path_factory.mktemp("idx") / "x", x, compress=compress)
    y = read_idx(path)
    assert y.shape == tuple(shape) and y.dtype == x.dtype
    np.testing.assert_array_equal(y, x)


def test_header_dimensions_whose_product_overflows_int64_are_named(tmp_path):
    # 65536**4 = 2**64 wraps to 0 in int64: the file then "matched" its 0 bytes of data and reshape failed
    path = tmp_path / "huge-idx4-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 4]) + (65536).to_bytes(4, "big") * 4)
    with pytest.raises(IDXError, match=rf"^{re.escape(str(path))}: truncated: the header declares shape "
                                       r"\(65536, 65536, 65536, 65536\)"):
        read_idx(path)
