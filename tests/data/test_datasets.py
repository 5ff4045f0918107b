"""ArrayDataset / TensorDataset, Subset, random_split."""
import numpy as np
import pytest

import tinyconv
from tinyconv.data import ArrayDataset, Subset, TensorDataset, random_split
from tinyconv.data import transforms as T


def make(n=10):
    images = np.arange(n * 2 * 3, dtype=np.uint8).reshape(n, 2, 3)
    return ArrayDataset(images, np.arange(n) % 3)


def test_getitem_len_and_batch():
    ds = make()
    assert len(ds) == 10
    x, y = ds[4]
    np.testing.assert_array_equal(x, ds.images[4])
    assert y == 1 and isinstance(y, int)
    xb, yb = ds.get_batch([4, 0, 9])
    np.testing.assert_array_equal(xb, ds.images[[4, 0, 9]])
    np.testing.assert_array_equal(yb, [1, 0, 0])
    assert "10 samples" in ds.describe()


def test_transform_applied_per_item_and_per_batch():
    ds = make()
    ds.transform = T.Compose([T.ToFloat(), lambda im: im + 1])
    x, _ = ds[2]
    np.testing.assert_allclose(x, ds.images[2] / 255 + 1, rtol=1e-6)
    xb, _ = ds.get_batch([2, 3])
    np.testing.assert_allclose(xb, ds.images[[2, 3]] / 255 + 1, rtol=1e-6)


def test_tensor_dataset_accepts_tensors_and_checks_shapes():
    ds = TensorDataset(tinyconv.randn(5, 1, 2, 2), tinyconv.tensor(np.arange(5)))
    assert isinstance(ds.images, np.ndarray) and ds.images.shape == (5, 1, 2, 2)
    with pytest.raises(ValueError, match=r"expected labels of shape \(5,\)"):
        ArrayDataset(np.zeros((5, 2, 2)), np.zeros(4, int))
    with pytest.raises(TypeError, match="expected integer labels"):
        ArrayDataset(np.zeros((5, 2, 2)), np.zeros(5))


def test_subset_maps_indices():
    ds = make()
    sub = Subset(ds, [7, 2, 5])
    assert len(sub) == 3
    np.testing.assert_array_equal(sub[1][0], ds.images[2])
    xb, yb = sub.get_batch([2, 0])
    np.testing.assert_array_equal(xb, ds.images[[5, 7]])
    np.testing.assert_array_equal(yb, ds.labels[[5, 7]])


@pytest.mark.parametrize("lengths, sizes", [([3, 7], [3, 7]), ([0.5, 0.3, 0.2], [5, 3, 2]),
                                           ([0.34, 0.33, 0.33], [4, 3, 3])])
def test_random_split_partitions(lengths, sizes):
    parts = random_split(make(), lengths, seed=1)
    assert [len(p) for p in parts] == sizes
    everything = np.concatenate([p.indices for p in parts])
    assert sorted(everything.tolist()) == list(range(10))
    again = random_split(make(), lengths, seed=1)
    assert all(np.array_equal(a.indices, b.indices) for a, b in zip(parts, again))


def test_random_split_bad_lengths():
    with pytest.raises(ValueError, match="sum to len"):
        random_split(make(), [3, 3])
