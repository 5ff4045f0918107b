"""DataLoader: batching, conversion, shuffling, seeding, transforms, and exact resume from state_dict."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinyconv
from tinyconv.data import ArrayDataset, DataLoader, random_split
from tinyconv.data import transforms as T


def dataset(n=23, c=None):
    rng = np.random.default_rng(0)
    shape = (n, 4, 5) if c is None else (n, c, 4, 5)
    return ArrayDataset(rng.integers(0, 256, shape, dtype=np.uint8), np.arange(n) % 10)


def collect(loader):
    return [(x.numpy().copy(), y.numpy().copy()) for x, y in loader]


def test_batches_sizes_types_and_scaling():
    ds = dataset()
    loader = DataLoader(ds, batch_size=5)
    batches = collect(loader)
    assert len(loader) == len(batches) == 5
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    x, y = next(iter(DataLoader(ds, batch_size=5)))
    assert x.shape == (5, 1, 4, 5) and x.dtype == np.float32 and y.dtype == np.int64
    assert not x.requires_grad
    np.testing.assert_allclose(x.numpy()[:, 0], ds.images[:5] / 255, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), ds.labels)  # no shuffle: in order


def test_drop_last_and_len():
    loader = DataLoader(dataset(), batch_size=5, drop_last=True)
    assert len(loader) == 4 and [len(y) for _, y in collect(loader)] == [5, 5, 5, 5]
    assert len(DataLoader(dataset(20), batch_size=5, drop_last=False)) == 4
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        DataLoader(dataset(), batch_size=0)


def test_channels_kept_and_float_dtype():
    ds = ArrayDataset(np.random.default_rng(0).random((6, 3, 4, 4)), np.zeros(6, int))
    x, _ = next(iter(DataLoader(ds, batch_size=6, dtype=np.float64)))
    assert x.shape == (6, 3, 4, 4) and x.dtype == np.float64
    np.testing.assert_array_equal(x.numpy(), ds.images)  # floats are not rescaled


def test_shuffle_is_a_new_permutation_each_epoch_and_seeded():
    ds = dataset()
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=7)
    e0 = np.concatenate([y for _, y in collect(loader)])
    e1 = np.concatenate([y for _, y in collect(loader)])
    order0, order1 = loader.order(0), loader.order(1)
    assert sorted(order0.tolist()) == list(range(23)) and not np.array_equal(order0, order1)
    np.testing.assert_array_equal(e0, ds.labels[order0])
    np.testing.assert_array_equal(e1, ds.labels[order1])
    again = DataLoader(ds, batch_size=4, shuffle=True, seed=7)
    np.testing.assert_array_equal(again.order(1), order1)
    assert not np.array_equal(DataLoader(ds, batch_size=4, shuffle=True, seed=8).order(0), order0)


def test_seed_none_follows_global_generator():
    ds = dataset()
    tinyconv.manual_seed(11)
    a = DataLoader(ds, shuffle=True).order(0)
    tinyconv.manual_seed(11)
    b = DataLoader(ds, shuffle=True).order(0)
    tinyconv.manual_seed(12)
    c = DataLoader(ds, shuffle=True).order(0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_transforms_dataset_then_loader_reproducible():
    ds = dataset(c=1)
    ds.transform = T.RandomCrop(4, padding=1)
    aug = T.Compose([T.RandomHorizontalFlip(), T.ToFloat(), T.Normalize(0.5, 0.25)])
    run = lambda: collect(DataLoader(ds, batch_size=6, shuffle=True, seed=3, transform=aug))  # noqa: E731
    a, b = run(), run()
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    x = np.concatenate([x for x, _ in a])
    assert x.shape == (23, 1, 4, 4) and x.min() < -1.5  # normalised: (0 - 0.5) / 0.25 = -2 in padded cells


def test_resume_mid_epoch_sees_the_same_batches():
    ds = dataset(40, c=1)
    aug = T.Compose([T.RandomCrop(4, padding=2), T.RandomHorizontalFlip(), T.ColorJitter(0.5, 0.5)])
    make = lambda: DataLoader(ds, batch_size=6, shuffle=True, seed=5, transform=aug)  # noqa: E731
    reference = []
    loader = make()
    for _ in range(3):
        reference += collect(loader)

    interrupted, got = make(), []
    for _ in range(1):
        got += collect(interrupted)
    for i, (x, y) in enumerate(interrupted):  # epoch 1, stop after 3 batches
        got.append((x.numpy().copy(), y.numpy().copy()))
        if i == 2:
            state = interrupted.state_dict()
            break
    assert state["epoch"] == 1 and state["batch"] == 3
    resumed = DataLoader(ds, batch_size=6, shuffle=True, seed=999, transform=aug)  # seed comes from the state
    resumed.load_state_dict(state)
    got += collect(resumed)   # the rest of epoch 1
    got += collect(resumed)   # epoch 2
    assert len(got) == len(reference) == 3 * 7
    for (xa, ya), (xb, yb) in zip(got, reference):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_state_after_a_full_epoch_points_at_the_next():
    loader = DataLoader(dataset(), batch_size=5, shuffle=True, seed=1)
    for _ in loader:
        state = loader.state_dict()  # taken inside the loop after the last batch
    assert (state["epoch"], state["batch"]) == (1, 0)
    assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (1, 0)
    fresh = DataLoader(dataset(), batch_size=5, shuffle=True, seed=2)
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(np.concatenate([y for _, y in collect(fresh)]), dataset().labels[loader.order(1)])


def test_break_starts_a_new_epoch_and_mismatched_state_is_refused():
    loader = DataLoader(dataset(), batch_size=5, shuffle=True, seed=1)
    next(iter(loader))
    first = np.concatenate([y for _, y in collect(loader)])
    np.testing.assert_array_equal(first, dataset().labels[loader.order(1)])
    with pytest.raises(ValueError, match="saved batch_size=5 but this loader has batch_size=4"):
        DataLoader(dataset(), batch_size=4).load_state_dict(loader.state_dict())


def test_plain_dataset_without_get_batch_and_subsets():
    class Squares:
        def __len__(self):
            return 7

        def __getitem__(self, i):
            return np.full((2, 2), i, np.uint8), i * i

    batches = collect(DataLoader(Squares(), batch_size=3))
    assert [x.shape for x, _ in batches] == [(3, 1, 2, 2), (3, 1, 2, 2), (1, 1, 2, 2)]
    np.testing.assert_array_equal(batches[1][1], [9, 16, 25])
    train, _ = random_split(dataset(), [20, 3], seed=0)
    ys = np.concatenate([y for _, y in collect(DataLoader(train, batch_size=8))])
    np.testing.assert_array_equal(ys, dataset().labels[train.indices])


def test_cuda_device_without_gpu_is_a_clear_error():
    if tinyconv.cuda.is_available():
        pytest.skip("a GPU is available")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        next(iter(DataLoader(dataset(), batch_size=2, device="cuda")))


@pytest.mark.cuda
def test_cuda_batches_match_cpu():
    if not tinyconv.cuda.is_available():
        pytest.skip("no GPU")
    cpu = collect(DataLoader(dataset(), batch_size=4, shuffle=True, seed=2))
    for (x, y), (xc, yc) in zip(DataLoader(dataset(), batch_size=4, shuffle=True, seed=2, device="cuda"), cpu):
        assert x.device == "cuda" and y.device == "cuda"
        np.testing.assert_array_equal(x.numpy(), xc)
        np.testing.assert_array_equal(y.numpy(), yc)


@given(n=st.integers(0, 30), batch_size=st.integers(1, 8), drop_last=st.booleans(), shuffle=st.booleans(),
       seed=st.integers(0, 2**32))
def test_every_sample_once_per_epoch(n, batch_size, drop_last, shuffle, seed):
    ds = ArrayDataset(np.zeros((n, 2, 2), np.uint8), np.arange(n))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed)
    sizes = [len(y) for _, y in loader]
    served = np.concatenate([y.numpy() for _, y in loader]) if len(loader) else np.zeros(0, int)
    assert len(sizes) == len(loader) == (n // batch_size if drop_last else -(-n // batch_size))
    assert all(s == batch_size for s in sizes[:-1]) and (not drop_last or all(s == batch_size for s in sizes))
    assert len(set(served.tolist())) == len(served) == (n - n % batch_size if drop_last else n)
    if not shuffle:
        np.testing.assert_array_equal(served, np.arange(len(served)))
