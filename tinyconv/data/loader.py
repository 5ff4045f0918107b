"""``DataLoader``: mini-batches of (images, labels) Tensors, shuffled reproducibly and resumable mid-epoch.

Each batch is built with whole-array operations: the dataset's ``get_batch(indices, rng)`` slices the batch
out of its arrays (falling back to ``dataset[i]`` item by item for datasets without it), the transforms run
on the NumPy batch, the images are converted once to ``dtype`` (uint8 is scaled to [0, 1]; (N, H, W)
gains a channel axis: (N, 1, H, W)) and copied to ``device`` in one transfer per array.

Randomness is counter-based: a loader holds one integer ``seed`` (given, or drawn from tinyconv's global
generator when the loader is built, so ``tinyconv.manual_seed`` makes it reproducible).  Epoch ``e``'s
order comes from a generator seeded by ``(seed, e)``, and the random transforms of batch ``b`` from one
seeded by ``(seed, e, b)``.  So the state is just ``(seed, epoch, batch)``: ``state_dict()`` and
``load_state_dict()`` let a resumed run see exactly the batches an uninterrupted run would have seen.
"""
import math

import numpy as np

from .. import backend
from ..core import Tensor
from .transforms import apply_batch


class DataLoader:
    """Iterate over ``dataset`` in batches of ``(images Tensor (N, 1, H, W) float, labels Tensor (N,) int64)``.

    ``batch_size``: samples per batch; ``shuffle``: a new random order every epoch; ``drop_last``: skip a
    final incomplete batch; ``seed``: the loader's random seed (None: drawn from tinyconv's global
    generator); ``sampler``: an object giving the indices of each epoch (``len`` and iteration, e.g.
    ``tinyconv.distributed.DistributedSampler``), whose ``set_epoch`` is called before each epoch (exclusive
    with ``shuffle``, as in PyTorch); ``transform``: applied to each batch after the dataset's own transform (see
    ``tinyconv.data.transforms``); ``device``: ``'cpu'`` or ``'cuda'``; ``dtype``: of the image Tensor.

    ``len(loader)`` is the number of batches per epoch.  Each ``for`` loop over the loader is one epoch; a
    loop abandoned part-way (``break``) still counts as an epoch, unless the loader was just restored with
    ``load_state_dict``, in which case the next loop finishes the saved epoch from the saved batch.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, transform=None,
                 device="cpu", dtype=np.float32, sampler=None):
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        self.sampler = sampler
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed) if seed is not None else int(backend.host_rng().integers(2**63))
        self.transform = transform
        self.device = backend.normalize_device(device)
        self.dtype = np.dtype(dtype)
        self.epoch = 0     # the epoch being (or next to be) iterated
        self._batch = 0    # batches of that epoch already yielded
        self._resume = False

    def __len__(self):
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _rng(self, *key):
        # fixed-length keys: SeedSequence pads with zeros, so (e,) and (e, 0) would collide
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    def order(self, epoch):
        """The sample indices of ``epoch``, in the order they are served."""
        if self.sampler is not None:
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)
            return np.fromiter(iter(self.sampler), dtype=np.int64)
        n = len(self.dataset)
        return self._rng(epoch, 0, 0).permutation(n) if self.shuffle else np.arange(n)

    def __iter__(self):
        if self._resume:
            self._resume = False
        elif self._batch > 0:  # the previous loop stopped part-way: start the next epoch
            self.epoch, self._batch = self.epoch + 1, 0
        epoch, order = self.epoch, self.order(self.epoch)
        for b in range(self._batch, len(self)):
            indices = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch = self._make_batch(indices, self._rng(epoch, 1, b))
            self._batch = b + 1
            yield batch
        self.epoch, self._batch = epoch + 1, 0

    def _make_batch(self, indices, rng):
        ds = self.dataset
        if hasattr(ds, "get_batch"):
            images, labels = ds.get_batch(indices, rng)
        else:
            items = [ds[int(i)] for i in indices]
            images = np.stack([backend.to_numpy(getattr(x, "data", x)) for x, _ in items])
            labels = np.array([int(y) for _, y in items])
        images = apply_batch(self.transform, images, rng)
        return self._to_tensor(images), Tensor(backend.to_device(np.asarray(labels, np.int64), self.device))

    def _to_tensor(self, images):
        images = np.asarray(images)
        if images.ndim == 3:  # (N, H, W) grayscale -> (N, 1, H, W)
            images = images[:, None]
        if images.dtype == np.uint8:
            images = images.astype(self.dtype) * self.dtype.type(1 / 255)
        else:
            images = images.astype(self.dtype, copy=False)
        return Tensor(backend.to_device(np.ascontiguousarray(images), self.device))

    def state_dict(self):
        """``{'seed', 'epoch', 'batch', ...}``: where the loader is (batches of ``epoch`` already served)."""
        epoch, batch = self.epoch, self._batch
        if batch >= len(self):  # the last batch was served: the next one is the next epoch's first
            epoch, batch = epoch + 1, 0
        return {"seed": self.seed, "epoch": epoch, "batch": batch, "batch_size": self.batch_size,
                "shuffle": self.shuffle, "drop_last": self.drop_last, "num_samples": len(self.dataset)}

    def load_state_dict(self, state):
        """Restore ``state_dict()``; the next loop continues the saved epoch at the saved batch."""
        for key in ("batch_size", "shuffle", "drop_last", "num_samples"):
            mine = len(self.dataset) if key == "num_samples" else getattr(self, key)
            if key in state and state[key] != mine:
                raise ValueError(f"DataLoader.load_state_dict: saved {key}={state[key]!r} but this loader has "
                                 f"{key}={mine!r}: the batches would differ")
        self.seed, self.epoch, self._batch = int(state["seed"]), int(state["epoch"]), int(state["batch"])
        self._resume = True

    def __repr__(self):
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, seed={self.seed}, device='{self.device}')")
