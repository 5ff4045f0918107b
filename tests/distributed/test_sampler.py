"""DistributedSampler: disjoint shards covering the dataset, PyTorch's padding and dropping, a new order
every epoch from (seed, epoch), and the DataLoader driving it."""
import numpy as np
import pytest

pytest.importorskip("mpi4py")
from tinyconv.data import ArrayDataset, DataLoader  # noqa: E402
from tinyconv.distributed import DistributedSampler  # noqa: E402


def shards(n, world, **kw):
    return [DistributedSampler(range(n), num_replicas=world, rank=r, **kw) for r in range(world)]


@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (10, 3), (2, 5), (7, 1)])
def test_shards_are_disjoint_and_cover_the_dataset(n, world):
    for shuffle in (False, True):
        ss = shards(n, world, shuffle=shuffle, seed=3)
        parts = [s.indices() for s in ss]
        assert all(len(p) == len(s) == -(-n // world) for p, s in zip(parts, ss))
        together = np.concatenate(parts)
        assert set(together) == set(range(n))  # every sample is seen
        if n % world == 0:
            assert len(set(together)) == n  # and exactly once
        else:  # padded with the first indices of the (shuffled) order, as PyTorch does
            assert len(together) == world * -(-n // world)


def test_drop_last_cuts_to_a_multiple_of_the_world():
    ss = shards(11, 3, shuffle=True, drop_last=True)
    parts = [s.indices() for s in ss]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert len(set(np.concatenate(parts))) == 9


def test_set_epoch_reshuffles_the_same_way_on_every_rank():
    a, b = shards(20, 2, seed=5)
    first = np.concatenate([a.indices(), b.indices()])
    a.set_epoch(1), b.set_epoch(1)
    second = np.concatenate([a.indices(), b.indices()])
    assert sorted(first) == sorted(second) == list(range(20)) and list(first) != list(second)
    again = shards(20, 2, seed=5)[0]
    again.set_epoch(1)
    assert list(again) == list(a)  # a function of (seed, epoch) only


def test_matches_pytorchs_shards_without_shuffle(torch):
    from torch.utils.data import DistributedSampler as TorchSampler
    for n, world, drop in [(11, 3, False), (11, 3, True), (2, 5, False)]:
        for r in range(world):
            mine = DistributedSampler(range(n), world, r, shuffle=False, drop_last=drop)
            theirs = TorchSampler(range(n), world, r, shuffle=False, drop_last=drop)
            assert list(mine) == list(theirs) and len(mine) == len(theirs)


def test_bad_rank_is_refused():
    with pytest.raises(ValueError, match="invalid rank 2"):
        DistributedSampler(range(4), num_replicas=2, rank=2)


def test_data_loader_serves_this_ranks_shard_per_epoch(dist):
    p, r = dist.get_world_size(), dist.get_rank()
    images = np.arange(12, dtype=np.float32).reshape(12, 1, 1, 1)
    ds = ArrayDataset(images, np.arange(12))
    sampler = DistributedSampler(ds, seed=1)
    loader = DataLoader(ds, batch_size=2, sampler=sampler)
    assert len(loader) == -(-len(sampler) // 2) and len(sampler) == -(-12 // p)
    for epoch in range(2):
        seen = np.concatenate([y.numpy() for _, y in loader])
        sampler_copy = DistributedSampler(ds, seed=1)
        sampler_copy.set_epoch(epoch)
        assert list(seen) == list(sampler_copy)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, batch_size=2, sampler=sampler, shuffle=True)
