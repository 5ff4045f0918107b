"""ImageNet preprocessing as the pretrained weights expect it (torchvision's ``ImageClassification``).

``ImageClassification(crop, resize, mean, std, interpolation)(image)``: resize so the shorter side is
``resize`` pixels, cut the central ``crop x crop`` square, scale to [0, 1], subtract ``mean`` and divide by
``std`` per channel; returns a ``(3, crop, crop)`` float32 Tensor.  ``image`` is an ``(H, W, 3)`` array
(uint8 0..255 or float 0..1; a grey ``(H, W)`` image is repeated, an alpha channel dropped) or a PIL image.

The resize is antialiased like PIL's (the filter is widened by the down-scaling factor, so every input pixel
contributes), written as one ``(out, in)`` weight matrix per axis: ``out = R_h @ image @ R_w^T``.
"""
import numpy as np

from ..core import Tensor


def _filter(kind):
    if kind == "bilinear":
        return 1.0, lambda t: np.clip(1.0 - np.abs(t), 0.0, None)
    if kind == "bicubic":                      # Keys' cubic with a = -0.5, as PIL
        a = -0.5

        def cubic(t):
            t = np.abs(t)
            return np.where(t < 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                            np.where(t < 2, ((t - 5) * t + 8) * t * a - 4 * a, 0.0))
        return 2.0, cubic
    raise ValueError(f"unknown interpolation {kind!r} (bilinear or bicubic)")


def resize_matrix(n_in, n_out, kind="bilinear"):
    """The ``(n_out, n_in)`` matrix of an antialiased 1-d resize (PIL's convolution-based resampling)."""
    support, f = _filter(kind)
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale
    j = np.arange(n_in) + 0.5
    w = f((j[None, :] - centers[:, None]) / fscale)
    w[np.abs(j[None, :] - centers[:, None]) > support * fscale] = 0.0
    return w / w.sum(axis=1, keepdims=True)


def _as_array(image):
    if hasattr(image, "convert") and hasattr(image, "size"):            # a PIL image
        image = np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got an array of shape {a.shape}")
    a = a[:, :, :3]
    return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)


class ImageClassification:
    """Resize, centre-crop, normalise: the preprocessing of a pretrained ImageNet weight set."""

    def __init__(self, crop_size, resize_size=256, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 interpolation="bilinear"):
        self.crop_size, self.resize_size = int(crop_size), int(resize_size)
        self.mean, self.std, self.interpolation = tuple(mean), tuple(std), interpolation

    def __call__(self, image):
        a = _as_array(image)
        h, w = a.shape[:2]
        short, long_ = (h, w) if h <= w else (w, h)
        new_long = int(self.resize_size * long_ / short)
        nh, nw = (self.resize_size, new_long) if h <= w else (new_long, self.resize_size)
        a = np.tensordot(resize_matrix(h, nh, self.interpolation), a, axes=(1, 0))            # (nh, w, 3)
        a = np.tensordot(a, resize_matrix(w, nw, self.interpolation), axes=(1, 1)).transpose(0, 2, 1)
        c = self.crop_size
        if c > min(nh, nw):
            raise ValueError(f"crop {c} is larger than the resized image {nh}x{nw}")
        top, left = int(round((nh - c) / 2.0)), int(round((nw - c) / 2.0))
        a = np.clip(a[top:top + c, left:left + c], 0.0, 1.0)
        a = (a - np.asarray(self.mean)) / np.asarray(self.std)
        return Tensor(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))

    def __repr__(self):
        return (f"ImageClassification(crop_size={self.crop_size}, resize_size={self.resize_size}, "
                f"mean={self.mean}, std={self.std}, interpolation={self.interpolation!r})")
