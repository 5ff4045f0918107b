"""Transforms: each against its formula written out here, batch == per-sample, and seeded reproducibility."""
import numpy as np
import pytest

import tinyconv
from tinyconv.data import transforms as T


def rng(seed=0):
    return np.random.default_rng(seed)


def images(n=4, c=None, h=5, w=6, dtype=np.uint8, seed=0):
    shape = (n, h, w) if c is None else (n, c, h, w)
    x = rng(seed).integers(0, 256, shape)
    return x.astype(dtype) if dtype == np.uint8 else (x / 255).astype(dtype)


def test_to_float_scales_uint8_and_keeps_floats():
    x = images(c=1)
    y = T.ToFloat()(x[0])
    assert y.dtype == np.float32 and y.shape == x[0].shape
    np.testing.assert_allclose(y, x[0] / 255.0, rtol=1e-6)
    f = images(dtype=np.float64)
    np.testing.assert_array_equal(T.ToFloat(np.float64)(f), f)
    assert T.ToTensor is T.ToFloat
    with pytest.raises(TypeError, match="ToFloat: expected a uint8 or float image, got dtype int32"):
        T.ToFloat()(np.zeros((2, 2), np.int32))


@pytest.mark.parametrize("c", [None, 1, 3])
def test_normalize_per_channel(c):
    x = images(c=c, dtype=np.float32)
    mean, std = ((0.5,), (0.25,)) if c in (None, 1) else ((0.1, 0.2, 0.3), (0.5, 0.25, 2.0))
    t = T.Normalize(mean, std)
    for sample in x:
        expected = np.empty_like(sample)
        if c == 3:
            for k in range(3):
                expected[k] = (sample[k] - mean[k]) / std[k]
        else:
            expected[...] = (sample - mean[0]) / std[0]
        np.testing.assert_allclose(t(sample), expected, rtol=1e-6)
    np.testing.assert_allclose(t.batch(x), np.stack([t(s) for s in x]), rtol=1e-6)
    assert t(x[0]).dtype == np.float32


def test_normalize_errors():
    with pytest.raises(TypeError, match="apply ToFloat"):
        T.Normalize(0.5, 0.5)(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"expected 3 value\(s\) for an image with 3 channel\(s\), got 2"):
        T.Normalize((0.1, 0.2), (1, 1))(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="std must be non-zero"):
        T.Normalize(0, 0)


@pytest.mark.parametrize("padding, lrtb", [(2, (2, 2, 2, 2)), ((1, 3), (1, 1, 3, 3)), ((1, 2, 3, 4), (1, 3, 2, 4))])
def test_pad_sides_as_torchvision(padding, lrtb):
    left, right, top, bottom = lrtb
    x = images(n=1, c=2)[0]
    y = T.Pad(padding, fill=7)(x)
    assert y.shape == (2, 5 + top + bottom, 6 + left + right)
    np.testing.assert_array_equal(y[:, top:top + 5, left:left + 6], x)
    border = np.ones(y.shape, bool)
    border[:, top:top + 5, left:left + 6] = False
    assert (y[border] == 7).all()
    np.testing.assert_array_equal(T.Pad(padding, fill=7).batch(images(n=3, c=2)),
                                  np.stack([T.Pad(padding, fill=7)(s) for s in images(n=3, c=2)]))


def test_random_crop_is_a_window_and_covers_every_offset():
    x = np.arange(5 * 6, dtype=np.uint8).reshape(5, 6)
    t = T.RandomCrop((3, 4))
    g = rng(1)
    seen = set()
    for _ in range(300):
        y = t(x, rng=g)
        top, left = divmod(int(y[0, 0]), 6)
        np.testing.assert_array_equal(y, x[top:top + 3, left:left + 4])
        seen.add((top, left))
    assert seen == {(i, j) for i in range(3) for j in range(3)}


def test_random_crop_with_padding_shifts_with_zero_fill():
    x = images(n=8, c=1, h=6, w=6)
    out = T.RandomCrop(6, padding=2).batch(x, rng=rng(3))
    assert out.shape == x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for p, y in zip(padded, out):  # each result is one of the 5x5 windows of its padded image
        assert any(np.array_equal(y, p[:, i:i + 6, j:j + 6]) for i in range(5) for j in range(5))
    with pytest.raises(ValueError, match="crop larger than"):
        T.RandomCrop(7)(x[0])


def test_horizontal_flip():
    x = images(n=50, c=1)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0)(x[0]), x[0])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1)(x[0]), x[0][..., ::-1])
    out = T.RandomHorizontalFlip(0.5).batch(x, rng=rng(0))
    flipped = [np.array_equal(y, s[..., ::-1]) for y, s in zip(out, x)]
    same = [np.array_equal(y, s) for y, s in zip(out, x)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 10 < sum(flipped) < 40  # both happen (50 draws, p = 0.5)
    assert out.base is not x and not np.shares_memory(out, x)


def test_color_jitter_formulas_with_fixed_factors():
    x = images(n=2, c=3, dtype=np.float32)
    gray = lambda im: 0.299 * im[0] + 0.587 * im[1] + 0.114 * im[2]  # noqa: E731
    b = T.ColorJitter(brightness=(0.5, 0.5))(x[0])
    np.testing.assert_allclose(b, x[0] * 0.5, rtol=1e-6)
    c = T.ColorJitter(contrast=(0.3, 0.3))(x[0])
    np.testing.assert_allclose(c, np.clip(0.3 * x[0] + 0.7 * gray(x[0]).mean(), 0, 1), rtol=1e-5)
    s = T.ColorJitter(saturation=(1.5, 1.5))(x[0])
    np.testing.assert_allclose(s, np.clip(1.5 * x[0] - 0.5 * gray(x[0]), 0, 1), rtol=1e-5, atol=1e-6)


def test_color_jitter_gray_saturation_noop_and_uint8_clipping():
    x = images(n=3, c=1)
    np.testing.assert_array_equal(T.ColorJitter(saturation=0.9).batch(x, rng=rng(0)), x)
    y = T.ColorJitter(brightness=(2, 2))(x[0])
    assert y.dtype == np.uint8
    np.testing.assert_array_equal(y, np.clip(x[0].astype(int) * 2, 0, 255))
    np.testing.assert_array_equal(T.ColorJitter()(x[0]), x[0])  # all ranges (1, 1): identity
    with pytest.raises(ValueError, match="brightness must be >= 0"):
        T.ColorJitter(brightness=-1)


def test_color_jitter_factors_vary_within_range():
    x = np.full((200, 1, 2, 2), 0.5, np.float32)
    y = T.ColorJitter(brightness=0.4).batch(x, rng=rng(0))
    factors = y[:, 0, 0, 0] / 0.5
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6 and factors.std() > 0.1


def test_compose_mixes_transforms_and_plain_functions():
    x = images(n=3, c=1)
    t = T.Compose([T.ToFloat(), lambda im: im * 2, T.Normalize(1.0, 0.5)])
    np.testing.assert_allclose(t(x[0]), (x[0] / 255 * 2 - 1) / 0.5, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.batch(x), np.stack([t(s) for s in x]), rtol=1e-6)
    assert "Normalize" in repr(t)


def test_random_transforms_reproducible_from_rng_and_global_seed():
    x = images(n=16, c=3)
    t = T.Compose([T.RandomCrop(4, padding=1), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4)])
    np.testing.assert_array_equal(t.batch(x, rng=rng(5)), t.batch(x, rng=rng(5)))
    assert not np.array_equal(t.batch(x, rng=rng(5)), t.batch(x, rng=rng(6)))
    tinyconv.manual_seed(3)
    a = t.batch(x)
    tinyconv.manual_seed(3)
    np.testing.assert_array_equal(t.batch(x), a)
