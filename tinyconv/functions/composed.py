"""Tutorial-level ops written as compositions of the differentiable ops (so their gradients are those ops'):
``elu``, ``normalize``, ``group_norm``, ``l1_loss``, ``smooth_l1_loss``, ``binary_cross_entropy``.

Each formula follows PyTorch's definition:

    elu(x)               = x if x > 0 else alpha * (exp(x) - 1)
    normalize(x)         = x / max(||x||_p along dim, eps)
    group_norm(x)        = (x - mean_g) / sqrt(var_g + eps) * weight + bias   (mean, biased var over each group
                           of C/G channels and all positions of one sample; Wu & He, 2018)
    l1_loss              = |x - t|
    smooth_l1_loss       = 0.5 (x - t)^2 / beta if |x - t| < beta else |x - t| - 0.5 beta
    binary_cross_entropy = -w (t log p + (1 - t) log(1 - p)), each log clamped at -100 as in PyTorch
"""
from .basic import clip, exp, log, maximum, where
from .reduction import mean, sum, var
from .shape import reshape

_REDUCTIONS = ("none", "mean", "sum")


def _reduce(loss, reduction, name):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return loss if reduction == "none" else (mean(loss) if reduction == "mean" else sum(loss))


def _same_shape(input, target, name):
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{name}: input of shape {tuple(input.shape)} and target of shape {tuple(target.shape)} "
                         f"must have the same shape")


def elu(input, alpha=1.0):
    """ELU (Clevert et al., 2016): ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise."""
    return where(input > 0, input, (exp(clip(input, None, 0.0)) - 1.0) * alpha)


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """``x / max(||x||_p, eps)`` along ``dim`` (unit vectors; ``p=2`` or ``1``)."""
    if p in (2, 2.0):
        norm = sum(input * input, dim, keepdims=True) ** 0.5
    elif p in (1, 1.0):
        norm = sum(abs(input), dim, keepdims=True)
    else:
        raise ValueError(f"normalize: p={p!r} is not supported; use p=2 or p=1")
    return input / maximum(norm, eps)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Group normalisation of (N, C, ...) over groups of ``C / num_groups`` channels (module docstring)."""
    N, C = input.shape[:2]
    if C % num_groups:
        raise ValueError(f"group_norm: {C} channels do not split into {num_groups} groups")
    g = reshape(input, (N, num_groups, -1))
    y = reshape((g - mean(g, 2, keepdims=True)) / (var(g, 2, keepdims=True, correction=0) + eps) ** 0.5,
                input.shape)
    shape = (1, C) + (1,) * (input.ndim - 2)
    if weight is not None:
        y = y * reshape(weight, shape)
    if bias is not None:
        y = y + reshape(bias, shape)
    return y


def l1_loss(input, target, reduction="mean"):
    """Mean (or sum, or per element) absolute error ``|input - target|``."""
    _same_shape(input, target, "l1_loss")
    return _reduce(abs(input - target), reduction, "l1_loss")


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """Huber-like loss: quadratic below ``beta``, linear above (module docstring)."""
    _same_shape(input, target, "smooth_l1_loss")
    d = abs(input - target)
    if beta == 0:
        return _reduce(d, reduction, "smooth_l1_loss")
    return _reduce(where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta), reduction, "smooth_l1_loss")


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross-entropy on probabilities ``input`` in [0, 1] (after a sigmoid; on logits use
    ``binary_cross_entropy_with_logits``, which is numerically safer)."""
    _same_shape(input, target, "binary_cross_entropy")
    lo, hi = float(input.data.min()) if input.data.size else 0.0, float(input.data.max()) if input.data.size else 0.0
    if lo < 0 or hi > 1:
        raise ValueError(f"binary_cross_entropy: input must be probabilities in [0, 1], got values in [{lo}, {hi}] "
                         f"(for logits use binary_cross_entropy_with_logits / BCEWithLogitsLoss)")
    loss = -(target * clip(log(input), -100.0, None) + (1.0 - target) * clip(log(1.0 - input), -100.0, None))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy")
