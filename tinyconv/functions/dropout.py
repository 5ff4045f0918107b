"""Dropout and its relatives: random masks, scaled so the expected activation is unchanged.

Inverted dropout (Srivastava et al., 2014): in training each element is kept with probability ``1 - p`` and
divided by ``1 - p``, so ``E[y] = x`` and evaluation is the identity.  The variants differ only in the shape
of the mask, which broadcasts over the input:

- ``dropout``: one coin per element, mask shape = input shape;
- ``dropout2d`` (Tompson et al., 2015): one coin per channel, mask ``(N, C, 1, 1)``: whole feature maps drop;
- ``drop_path`` / stochastic depth (Huang et al., 2016): one coin per sample, mask ``(N, 1, 1, 1)``, applied to
  a residual branch so the whole branch is skipped for that sample (``mode='batch'``: one coin for all).

Masks come from ``tinyconv.backend.rng_for(xp)``, so ``tinyconv.manual_seed`` makes them reproducible.
"""
import numpy as np

from ..backend import get_array_module, rng_for
from ..core import Function


class MaskMultiply(Function):
    """``y = x * mask`` with a constant ``mask`` (given as a hyper-parameter) that broadcasts over ``x``."""

    def forward(self, x):
        return x * self.mask

    def backward(self, gy):
        # dy/dx = mask (0 for dropped elements, 1/(1-p) for kept ones)
        return gy * self.mask


def _check_p(name, p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: dropout probability has to be between 0 and 1, but got {p}")


def _keep_mask(x, shape, p):
    """A ``{0, 1/(1-p)}`` array of ``shape`` in ``x``'s dtype; all zeros when ``p == 1``."""
    xp = get_array_module(x.data)
    draw_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32  # the generators' dtypes
    keep = rng_for(xp).random(shape, dtype=draw_dtype) >= p if p < 1 else xp.zeros(shape, bool)
    return keep.astype(x.dtype) * x.dtype.type(1 / (1 - p) if p < 1 else 0)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``; identity unless training."""
    _check_p("dropout", p)
    if not training or p == 0:
        return input
    return MaskMultiply.apply(input, mask=_keep_mask(input, input.shape, p))


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels: ``input`` ``(N, C, H, W)`` (or unbatched ``(C, H, W)``), one coin per channel."""
    _check_p("dropout2d", p)
    if input.ndim not in (3, 4):
        raise ValueError(f"dropout2d: expected input of shape (N, C, H, W) or (C, H, W), got {input.shape}")
    if not training or p == 0:
        return input
    return MaskMultiply.apply(input, mask=_keep_mask(input, input.shape[:-2] + (1, 1), p))


def stochastic_depth(input, p, mode, training=True):
    """torchvision's stochastic depth: drop the residual branch ``input`` (``(N, ...)``) per sample
    (``mode='row'``) or for the whole batch (``mode='batch'``) with probability ``p``, scaling by ``1/(1-p)``."""
    _check_p("stochastic_depth", p)
    if mode not in ("row", "batch"):
        raise ValueError(f"stochastic_depth: mode has to be either 'batch' or 'row', but got {mode!r}")
    if not training or p == 0:
        return input
    shape = (input.shape[0],) + (1,) * (input.ndim - 1) if mode == "row" else (1,) * input.ndim
    return MaskMultiply.apply(input, mask=_keep_mask(input, shape, p))


def drop_path(input, p=0.0, training=True):
    """Stochastic depth per sample (``stochastic_depth(input, p, 'row', training)``, timm's name)."""
    return stochastic_depth(input, p, "row", training)
