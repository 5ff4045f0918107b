"""Image transforms on NumPy arrays: scaling, normalisation, padding and the classic random augmentations.

A sample is an image array of shape (H, W) (grayscale) or (C, H, W), uint8 in [0, 255] or float in [0, 1].
Every transform is a callable ``t(x, rng=None)`` on one sample and has ``t.batch(xs, rng=None)`` for a stack of
samples ``xs`` of shape (N, H, W) or (N, C, H, W); the result of ``batch`` is what calling ``t`` on each
sample would give, computed with whole-array NumPy operations where possible.  ``DataLoader`` uses ``batch``.

Randomness: random transforms draw from the NumPy ``Generator`` passed as ``rng``.  The loader passes its
own seeded generator, so a seeded run sees the same augmentations every time; with ``rng=None`` they draw
from tinyconv's global generator (``tinyconv.manual_seed``).  Plain functions ``f(x)`` may be mixed into
``Compose``; they get no generator and are applied sample by sample.

The random augmentations are the ones the lectures describe for AlexNet (random crops of a padded image,
horizontal mirroring) plus brightness/contrast/saturation jitter as in torchvision's ``ColorJitter``.
"""
import numbers

import numpy as np

from .. import backend


def _rng(rng):
    return rng if rng is not None else backend.host_rng()


def apply(transform, x, rng=None):
    """Apply a transform (a :class:`Transform`, any callable ``f(x)``, or ``None``) to one sample."""
    if transform is None:
        return x
    if isinstance(transform, Transform):
        return transform(x, rng=rng)
    return transform(x)


def apply_batch(transform, xs, rng=None):
    """Apply a transform to a stacked batch ``xs`` (N, ...): ``transform.batch`` or a per-sample loop."""
    if transform is None:
        return xs
    if isinstance(transform, Transform):
        return transform.batch(xs, rng=rng)
    return np.stack([transform(x) for x in xs])


def _check_image(name, x, sample_ndim):
    if sample_ndim not in (2, 3):
        raise ValueError(f"{name}: expected images of shape (H, W) or (C, H, W), got an array of shape {x.shape}")


class Transform:
    """Base class: subclasses implement ``__call__(x, rng=None)``; ``batch`` defaults to a per-sample loop."""

    def __call__(self, x, rng=None):
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")

    def batch(self, xs, rng=None):
        rng = _rng(rng)
        return np.stack([self(x, rng=rng) for x in xs])

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` one after another (plain callables ``f(x)`` allowed)."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x, rng=None):
        rng = _rng(rng)
        for t in self.transforms:
            x = apply(t, x, rng)
        return x

    def batch(self, xs, rng=None):
        rng = _rng(rng)
        for t in self.transforms:
            xs = apply_batch(t, xs, rng)
        return xs

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class ToFloat(Transform):
    """uint8 in [0, 255] -> float in [0, 1] (x / 255); float input is only cast to ``dtype``.

    The same scaling as torchvision's ``ToTensor`` (which also reorders HWC to CHW; here images are
    already HW or CHW, and the result stays a NumPy array: ``DataLoader`` makes the Tensor).
    """

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)

    def __call__(self, x, rng=None):
        x = np.asarray(x)
        if x.dtype == np.uint8:
            return x.astype(self.dtype) * self.dtype.type(1 / 255)
        if x.dtype.kind in "fb":
            return x.astype(self.dtype, copy=False)
        raise TypeError(f"ToFloat: expected a uint8 or float image, got dtype {x.dtype.name}")

    batch = __call__  # elementwise: a batch is just a bigger array


ToTensor = ToFloat


class Normalize(Transform):
    """Per-channel standardisation ``(x - mean[c]) / std[c]`` of a float image.

    ``mean``/``std``: a number or a sequence of C numbers (C = 1 for (H, W) images).  uint8 input is an error:
    put ``ToFloat()`` first (MNIST's usual constants, ``Normalize((0.1307,), (0.3081,))``, are in [0, 1] units).
    """

    def __init__(self, mean, std):
        self.mean = tuple(np.atleast_1d(np.asarray(mean, dtype=np.float64)).tolist())
        self.std = tuple(np.atleast_1d(np.asarray(std, dtype=np.float64)).tolist())
        if len(self.mean) != len(self.std):
            raise ValueError(f"Normalize: mean has {len(self.mean)} values but std has {len(self.std)}")
        if any(s == 0 for s in self.std):
            raise ValueError(f"Normalize: std must be non-zero, got {self.std}")

    def _apply(self, x, sample_ndim):
        x = np.asarray(x)
        _check_image("Normalize", x, sample_ndim)
        if x.dtype.kind != "f":
            raise TypeError(f"Normalize: expected a float image, got dtype {x.dtype.name}: apply ToFloat() first")
        channels = x.shape[-3] if sample_ndim == 3 else 1
        if len(self.mean) not in (1, channels):
            raise ValueError(f"Normalize(mean={self.mean}, std={self.std}): expected {channels} value(s) for an "
                             f"image with {channels} channel(s), got {len(self.mean)}")
        shape = (-1, 1, 1) if sample_ndim == 3 else (-1, 1)
        mean = np.asarray(self.mean, dtype=x.dtype).reshape(shape)
        std = np.asarray(self.std, dtype=x.dtype).reshape(shape)
        return (x - mean) / std

    def __call__(self, x, rng=None):
        return self._apply(x, np.ndim(x))

    def batch(self, xs, rng=None):
        return self._apply(xs, np.ndim(xs) - 1)


def _padding4(padding, name):
    """int p -> (p, p, p, p); (lr, tb) -> (lr, tb, lr, tb); (left, top, right, bottom) as given."""
    if isinstance(padding, numbers.Integral):
        padding = (int(padding),) * 4
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        padding = padding * 2
    if len(padding) != 4 or min(padding) < 0:
        raise ValueError(f"{name}: padding must be an int >= 0, (left/right, top/bottom) or "
                         f"(left, top, right, bottom), got {padding}")
    return padding


def _pad(x, padding, fill):
    left, top, right, bottom = padding
    width = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    return np.pad(x, width, mode="constant", constant_values=fill)


class Pad(Transform):
    """Pad the two spatial axes with the constant ``fill``.

    ``padding``: int (all sides), (left/right, top/bottom) or (left, top, right, bottom), as torchvision.
    """

    def __init__(self, padding, fill=0):
        self.padding = _padding4(padding, "Pad")
        self.fill = fill

    def __call__(self, x, rng=None):
        return _pad(np.asarray(x), self.padding, self.fill)

    batch = __call__


class RandomCrop(Transform):
    """Crop a random ``size`` window (int or (h, w)), after optional ``Pad(padding, fill)``.

    The window's top-left corner is uniform over all positions inside the (padded) image.  The classic
    CIFAR/MNIST augmentation is ``RandomCrop(28, padding=4)``: a random shift of up to 4 pixels.
    """

    def __init__(self, size, padding=None, fill=0):
        self.size = (int(size), int(size)) if isinstance(size, numbers.Integral) else tuple(int(s) for s in size)
        self.padding = None if padding is None else _padding4(padding, "RandomCrop")
        self.fill = fill

    def _offsets(self, x, n, rng):
        h, w = self.size
        H, W = x.shape[-2:]
        if h > H or w > W:
            raise ValueError(f"RandomCrop(size={self.size}): crop larger than the (padded) image {H}x{W}")
        return rng.integers(0, H - h + 1, size=n), rng.integers(0, W - w + 1, size=n)

    def __call__(self, x, rng=None):
        x = np.asarray(x)
        if self.padding is not None:
            x = _pad(x, self.padding, self.fill)
        (top,), (left,) = self._offsets(x, 1, _rng(rng))
        return x[..., top:top + self.size[0], left:left + self.size[1]]

    def batch(self, xs, rng=None):
        xs = np.asarray(xs)
        if self.padding is not None:
            xs = _pad(xs, self.padding, self.fill)
        tops, lefts = self._offsets(xs, len(xs), _rng(rng))
        # every h x w window of every image, as a view: (N, [C,] H-h+1, W-w+1, h, w); pick one per image
        windows = np.lib.stride_tricks.sliding_window_view(xs, self.size, axis=(-2, -1))
        n = np.arange(len(xs))
        return windows[n, :, tops, lefts] if xs.ndim == 4 else windows[n, tops, lefts]


class RandomHorizontalFlip(Transform):
    """Mirror the image left-right (the last axis) with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = float(p)

    def __call__(self, x, rng=None):
        x = np.asarray(x)
        return x[..., ::-1].copy() if _rng(rng).random() < self.p else x

    def batch(self, xs, rng=None):
        xs = np.array(xs)  # a copy: flipped rows are written in place
        flip = _rng(rng).random(len(xs)) < self.p
        xs[flip] = xs[flip][..., ::-1]
        return xs


def _factor_range(value, name):
    """0.4 -> (0.6, 1.4) as torchvision: a non-negative jitter v gives factors uniform in [max(0, 1-v), 1+v]."""
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"ColorJitter: {name} must be >= 0, got {value}")
        return (max(0.0, 1.0 - value), 1.0 + value)
    lo, hi = (float(v) for v in value)
    if not 0 <= lo <= hi:
        raise ValueError(f"ColorJitter: {name} range must satisfy 0 <= min <= max, got {value}")
    return (lo, hi)


_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601 grayscale weights, as PIL and torchvision


class ColorJitter(Transform):
    """Randomly scale brightness, contrast and saturation (in that fixed order), as torchvision's ColorJitter.

    With factors b, c, s drawn uniformly from each range (``v`` means [max(0, 1-v), 1+v]):
    brightness ``x <- b x``; contrast ``x <- c x + (1 - c) mean(gray(x))``; saturation
    ``x <- s x + (1 - s) gray(x)`` with ``gray = 0.299 R + 0.587 G + 0.114 B``.  The result is clipped to the
    valid range ([0, 255] for uint8, kept uint8; [0, 1] for floats).  Saturation needs colour: it is a
    no-op on 1-channel images ((H, W) or (1, H, W)), whose gray image is the image itself.
    """

    def __init__(self, brightness=0, contrast=0, saturation=0):
        self.brightness = _factor_range(brightness, "brightness")
        self.contrast = _factor_range(contrast, "contrast")
        self.saturation = _factor_range(saturation, "saturation")

    def _apply(self, xs, rng):
        """``xs``: a batch (N, H, W) or (N, C, H, W); one factor triple per sample."""
        xs = np.asarray(xs)
        color = xs.ndim == 4 and xs.shape[1] == 3
        if xs.ndim not in (3, 4) or (xs.ndim == 4 and xs.shape[1] not in (1, 3)):
            raise ValueError(f"ColorJitter: expected images of shape (H, W), (1, H, W) or (3, H, W), "
                             f"got samples of shape {xs.shape[1:]}")
        n = len(xs)
        shape = (n,) + (1,) * (xs.ndim - 1)
        b, c, s = (rng.uniform(lo, hi, size=n).astype(np.float32).reshape(shape)
                   for lo, hi in (self.brightness, self.contrast, self.saturation))
        top = 255.0 if xs.dtype == np.uint8 else 1.0
        x = xs.astype(np.float32) if xs.dtype.kind != "f" else xs

        def gray(x):
            if not color:
                return x
            return np.tensordot(_LUMA.astype(x.dtype), x, axes=([0], [1]))[:, None]

        x = np.clip(x * b, 0, top)
        x = np.clip(c * x + (1 - c) * gray(x).mean(axis=tuple(range(1, x.ndim)), keepdims=True), 0, top)
        if color:
            x = np.clip(s * x + (1 - s) * gray(x), 0, top)
        if xs.dtype == np.uint8:
            return np.rint(x).astype(np.uint8)
        return x.astype(xs.dtype, copy=False)

    def __call__(self, x, rng=None):
        return self._apply(np.asarray(x)[None], _rng(rng))[0]

    def batch(self, xs, rng=None):
        return self._apply(xs, _rng(rng))
