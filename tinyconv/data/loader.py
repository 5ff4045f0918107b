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
from .workers import WorkerPool


class DataLoader:
    """Iterate over ``dataset`` in batches of ``(images Tensor (N, 1, H, W) float, labels Tensor (N,) int64)``.

    ``batch_size``: samples per batch; ``shuffle``: a new random order every epoch; ``drop_last``: skip a
    final incomplete batch; ``seed``: the loader's random seed (None: drawn from tinyconv's global
    generator); ``sampler``: an object giving the indices of each epoch (``len`` and iteration, e.g.
    ``tinyconv.distributed.DistributedSampler``), whose ``set_epoch`` is called before each epoch (exclusive
    with ``shuffle``, as in PyTorch); ``transform``: applied to each batch after the dataset's own transform (see
    ``tinyconv.data.transforms``); ``device``: ``'cpu'`` or ``'cuda'``; ``dtype``: of the image Tensor.

    ``num_workers``: processes that build the next batches while the step runs (``workers.py``; the batches
    are the same as with 0, in the same order); ``prefetch_factor``: batches in flight per worker (default
    2); ``persistent_workers``: keep the processes between epochs (they see the dataset as it was when
    they started); ``multiprocessing_context``: ``'fork'`` (the default where available), ``'spawn'`` or
    ``'forkserver'`` (those need a picklable dataset and transform).  ``close()`` stops persistent workers.

    ``len(loader)`` is the number of batches per epoch.  Each ``for`` loop over the loader is one epoch; a
    loop abandoned part-way (``break``) still counts as an epoch, unless the loader was just restored with
    ``load_state_dict``, in which case the next loop finishes the saved epoch from the saved batch.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, transform=None,
                 device="cpu", dtype=np.float32, sampler=None, num_workers=0, prefetch_factor=None,
                 persistent_workers=False, multiprocessing_context=None):
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if int(num_workers) < 0:
            raise ValueError(f"DataLoader: num_workers must be >= 0, got {num_workers}")
        if num_workers == 0 and (prefetch_factor is not None or persistent_workers):
            raise ValueError("DataLoader: prefetch_factor and persistent_workers need num_workers > 0")
        if prefetch_factor is not None and int(prefetch_factor) < 1:
            raise ValueError(f"DataLoader: prefetch_factor must be >= 1, got {prefetch_factor}")
        self.sampler = sampler
        self.num_workers = int(num_workers)
        self.prefetch_factor = 2 if prefetch_factor is None else int(prefetch_factor)
        self.persistent_workers = bool(persistent_workers)
        self.multiprocessing_context = multiprocessing_context
        self._pool = None
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
        slices = [(b, order[b * self.batch_size:(b + 1) * self.batch_size]) for b in range(self._batch, len(self))]
        if self.num_workers == 0:
            host = (host_batch(self.dataset, self.transform, self.dtype, idx, self._rng(epoch, 1, b))
                    for b, idx in slices)
        else:
            host = self._from_workers(epoch, slices)
        try:
            for (b, _), (images, labels) in zip(slices, host):
                self._batch = b + 1
                yield self._to_tensors(images, labels)
        finally:
            host.close()  # a loop left early (break, an exception, Ctrl-C) stops the workers now
        self.epoch, self._batch = epoch + 1, 0

    def _from_workers(self, epoch, slices):
        pool = self._pool or WorkerPool(self.num_workers, self.dataset, self.transform, self.dtype, host_batch,
                                        self.multiprocessing_context)
        self._pool = pool if self.persistent_workers else None
        try:
            yield from pool.batches([(self.seed, epoch, b, idx) for b, idx in slices],
                                    self.num_workers * self.prefetch_factor)
        except Exception:
            if self.persistent_workers:  # a failed worker pool is not reused
                self.close()
            raise
        finally:
            if not self.persistent_workers:
                pool.close()

    def close(self):
        """Stop the worker processes kept by ``persistent_workers=True`` (they also stop at garbage collection)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _to_tensors(self, images, labels):
        return (Tensor(backend.to_device(images, self.device)),
                Tensor(backend.to_device(labels, self.device)))

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

    def __getstate__(self):  # a loader handed to another process leaves its worker pool behind
        state = dict(self.__dict__)
        state["_pool"] = None
        return state

    def __repr__(self):
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, seed={self.seed}, device='{self.device}')")


def host_batch(dataset, transform, dtype, indices, rng):
    """One batch as NumPy arrays ``(images (N, C, H, W) of dtype, labels (N,) int64)``, on the host: sliced by the
    dataset's ``get_batch`` (or item by item), transformed, uint8 scaled to [0, 1], a channel axis added to
    (N, H, W).  Run by the loader itself or by its worker processes."""
    if hasattr(dataset, "get_batch"):
        images, labels = dataset.get_batch(indices, rng)
    else:
        items = [dataset[int(i)] for i in indices]
        images = np.stack([backend.to_numpy(getattr(x, "data", x)) for x, _ in items])
        labels = np.array([int(y) for _, y in items])
    images = np.asarray(apply_batch(transform, images, rng))
    if images.ndim == 3:  # (N, H, W) grayscale -> (N, 1, H, W)
        images = images[:, None]
    if images.dtype == np.uint8:
        images = images.astype(dtype) * dtype.type(1 / 255)
    else:
        images = images.astype(dtype, copy=False)
    return np.ascontiguousarray(images), np.asarray(labels, np.int64)
