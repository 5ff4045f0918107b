"""Resizing images: ``interpolate`` (nearest and bilinear), as ``torch.nn.functional.interpolate``.

Shapes: x (N, C, H, W) -> y (N, C, OH, OW).  Both modes are separable and linear in x: each output row is a
weighted sum of input rows, each output column of input columns.  With the (OH, H) matrix ``A`` that holds
the row weights and the (OW, W) matrix ``B`` for the columns,

    y = A @ x @ B^T                  (per image and channel)
    dx = A^T @ dy @ B                (the transposed maps send each output gradient back to its sources)

Where output pixel o samples the input (PyTorch's convention, ``scale = in / out``, or ``1 / scale_factor``
when a scale factor is given):

- ``nearest``: source ``floor(o * scale)`` (clamped to the last pixel); a weight of 1.
- ``bilinear``, ``align_corners=False``: ``s = (o + 0.5) * scale - 0.5`` (the pixel centres line up), clamped
  at 0; ``align_corners=True``: ``s = o * (in - 1) / (out - 1)`` (the corner pixels line up).  The weights are
  ``1 - (s - floor(s))`` on ``floor(s)`` and ``s - floor(s)`` on the next pixel (clamped to the last one).
"""
import math

import numpy as np

from ..backend import get_array_module
from ..core import Function, as_tensor


def _weights(n_in, n_out, scale, mode, align_corners):
    """The (n_out, n_in) interpolation matrix along one axis, in float64 on the host."""
    o = np.arange(n_out, dtype=np.float64)
    m = np.zeros((n_out, n_in))
    if mode == "nearest":
        m[np.arange(n_out), np.minimum(np.floor(o * scale).astype(np.int64), n_in - 1)] = 1.0
        return m
    if align_corners:
        s = o * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        s = np.maximum((o + 0.5) * scale - 0.5, 0.0)
    lo = np.minimum(np.floor(s).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = s - lo
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


class Interpolate(Function):
    """``y = A @ x @ B^T`` with the row and column interpolation matrices (module docstring)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.A, self.B = (xp.asarray(m.astype(x.dtype)) for m in self.matrices)
        return self.A @ x @ self.B.T

    def backward(self, gy):
        # dx = A^T @ dy @ B
        return self.A.T @ gy @ self.B


_MODES = ("nearest", "bilinear")


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize a batch of images (N, C, H, W) to ``size`` (an int or (OH, OW)) or by ``scale_factor`` (a number
    or a pair); ``mode`` ``'nearest'`` or ``'bilinear'`` (with ``align_corners``, default False).  The formulas
    are in the module docstring; the results match PyTorch's.
    """
    x = as_tensor(input)
    if mode not in _MODES:
        raise ValueError(f"interpolate: mode {mode!r} is not supported; use one of {_MODES} "
                         f"(bicubic, area and trilinear are not implemented)")
    if x.ndim != 4:
        raise ValueError(f"interpolate: expected a 4-d input (N, C, H, W), got shape {x.shape}")
    if align_corners is not None and mode == "nearest":
        raise ValueError("interpolate: align_corners applies to mode='bilinear' only")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    H, W = x.shape[2:]
    if size is not None:
        OH, OW = (size, size) if isinstance(size, int) else tuple(size)
        scales = (H / OH, W / OW)
    else:
        fh, fw = (scale_factor, scale_factor) if isinstance(scale_factor, (int, float)) else tuple(scale_factor)
        OH, OW = int(math.floor(H * fh)), int(math.floor(W * fw))
        scales = (H / OH, W / OW) if recompute_scale_factor else (1.0 / fh, 1.0 / fw)
    if OH < 1 or OW < 1:
        raise ValueError(f"interpolate: output size ({OH}, {OW}) from input ({H}, {W}) must be positive")
    ac = bool(align_corners)
    matrices = (_weights(H, OH, scales[0], mode, ac), _weights(W, OW, scales[1], mode, ac))
    return Interpolate.apply(x, matrices=matrices)
