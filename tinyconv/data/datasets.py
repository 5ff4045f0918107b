"""In-memory datasets: ``ArrayDataset`` (alias ``TensorDataset``), ``Subset`` and ``random_split``.

A dataset returns ``(image, label)`` from ``ds[i]`` and its size from ``len(ds)``.  The datasets here also
offer ``ds.get_batch(indices, rng)``, which slices the whole batch out of the stored arrays at once and
applies the dataset's ``transform`` to it; ``DataLoader`` uses that instead of a Python loop over items.
Any object with ``__getitem__`` and ``__len__`` still works with the loader (item by item).
"""
import numpy as np

from .. import backend
from .transforms import apply, apply_batch


class Dataset:
    """Base class: ``__getitem__(i) -> (image, label)``, ``__len__``, and a one-line ``describe()``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def describe(self):
        return f"{type(self).__name__}: {len(self):,} samples"

    def __repr__(self):
        return f"<{self.describe()}>"


def _as_array(x):
    return backend.to_numpy(getattr(x, "data", x))


class ArrayDataset(Dataset):
    """Samples stored as two arrays: ``images`` (N, ...) and integer ``labels`` (N,).

    ``images``: any dtype, typically uint8 (N, H, W) or float (N, C, H, W); Tensors and CuPy arrays are
    copied to NumPy.  ``transform``: applied to each image when it is read (see ``tinyconv.data.transforms``).
    ``name`` is what ``describe()`` reports.
    """

    def __init__(self, images, labels, transform=None, name=None):
        images, labels = _as_array(images), _as_array(labels)
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"{type(self).__name__}: expected labels of shape ({len(images)},) to match "
                             f"images of shape {images.shape}, got labels of shape {labels.shape}")
        if labels.dtype.kind not in "iu":
            raise TypeError(f"{type(self).__name__}: expected integer labels, got dtype {labels.dtype.name}")
        self.images, self.labels = images, labels
        self.transform = transform
        self.name = name or type(self).__name__

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return apply(self.transform, self.images[index]), int(self.labels[index])

    def get_batch(self, indices, rng=None):
        """``(images[indices] transformed, labels[indices])`` as stacked NumPy arrays."""
        indices = np.asarray(indices, dtype=np.int64)
        return apply_batch(self.transform, self.images[indices], rng), self.labels[indices]

    def describe(self):
        return f"{self.name}: {len(self):,} samples, images {self.images.shape[1:]} {self.images.dtype.name}"


TensorDataset = ArrayDataset


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices`` (in that order); batches still slice the parent's arrays."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def get_batch(self, indices, rng=None):
        return self.dataset.get_batch(self.indices[np.asarray(indices, dtype=np.int64)], rng)

    @property
    def transform(self):
        return getattr(self.dataset, "transform", None)

    def describe(self):
        return f"Subset of {len(self):,} samples of [{self.dataset.describe()}]"


def random_split(dataset, lengths, seed=None):
    """Split ``dataset`` into non-overlapping random ``Subset``s of the given ``lengths``.

    ``lengths``: integers summing to ``len(dataset)``, or fractions summing to 1 (rounded down, the remainder
    dealt one by one to the first subsets, as PyTorch).  The permutation comes from ``seed``, or from
    tinyconv's global generator when ``seed`` is None.
    """
    n = len(dataset)
    lengths = list(lengths)
    if all(isinstance(x, float) for x in lengths) and abs(sum(lengths) - 1) < 1e-6:
        counts = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n or min(lengths) < 0:
        raise ValueError(f"random_split: lengths {lengths} must be non-negative and sum to len(dataset) = {n}")
    rng = np.random.default_rng(seed) if seed is not None else backend.host_rng()
    perm = rng.permutation(n)
    bounds = np.cumsum([0] + lengths)
    return [Subset(dataset, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
