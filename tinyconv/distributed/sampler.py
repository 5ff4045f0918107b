"""``DistributedSampler``: each rank's disjoint share of a dataset's indices, reshuffled every epoch.

PyTorch's rules: the order of epoch e is a permutation drawn from ``(seed, epoch)`` (the same on every
rank, so the shards stay disjoint), then either padded by repeating its first indices up to a multiple of
``num_replicas`` (``drop_last=False``: every sample is seen, a few twice) or cut down to one
(``drop_last=True``: a few are skipped); rank r takes positions ``r, r + P, r + 2P, ...``.
"""
import math

import numpy as np

from . import comm


class DistributedSampler:
    """Indices of ``dataset`` for one rank: ``len(dataset) / num_replicas`` of them per epoch.

    ``num_replicas`` and ``rank`` default to the process group's; ``shuffle``, ``seed`` and ``drop_last``
    as in PyTorch.  Call ``set_epoch(e)`` before each epoch (``DataLoader(..., sampler=s)`` does it), or
    every epoch repeats epoch 0's order.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None:
            num_replicas = comm.get_world_size()
        if rank is None:
            rank = comm.get_rank()
        if not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank}, rank should be in [0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % self.num_replicas:
            self.num_samples = n // self.num_replicas
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        """Select the shuffle of ``epoch`` (the same on every rank)."""
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch, as a NumPy int64 array."""
        n = len(self.dataset)
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.epoch,)))
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        if self.total_size > n:  # pad by repeating the start (again and again if the dataset is tiny)
            order = np.resize(order, self.total_size)
        else:
            order = order[:self.total_size]
        return order[self.rank:self.total_size:self.num_replicas]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples

    def __repr__(self):
        return (f"DistributedSampler(num_replicas={self.num_replicas}, rank={self.rank}, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last})")
