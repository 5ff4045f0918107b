"""``tinyconv.nn.utils``: gradient clipping and flattening parameters into one vector.

Clipping guards against exploding gradients (lecture 003, "Проблемы обучения": vanishing or exploding
gradients in deep networks).  Everything works on the raw arrays in place, on the gradients' device.
"""
import math

import numpy as np

from .. import backend
from ..core import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad.data for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    r"""Scale all gradients together so that their joint norm is at most ``max_norm``; returns that norm.

    The total norm is the ``norm_type``-norm of the vector of all gradient entries,
    ``||g|| = (sum_i |g_i|^p)^(1/p)`` (``max_i |g_i|`` for ``norm_type=inf``).  Every gradient is multiplied by
    ``min(1, max_norm / (||g|| + 1e-6))``, as in PyTorch.  The norm is returned as a 0-d ``Tensor`` on the
    gradients' device (no host synchronisation); with ``error_if_nonfinite`` a NaN or infinite norm raises.
    """
    grads = _grads(parameters)
    if not grads:
        return Tensor(np.zeros((), np.float32))
    xp = backend.get_array_module(grads[0])
    norm_type = float(norm_type)
    if math.isinf(norm_type):
        norms = [xp.max(xp.abs(g)) if g.size else xp.zeros((), g.dtype) for g in grads]
        total = xp.max(xp.stack(norms))
    else:
        # sum over gradients of ||g_k||_p^p, then the p-th root: the norm of the stacked per-gradient norms
        norms = [_vector_norm(xp, g.ravel(), norm_type) for g in grads]
        total = _vector_norm(xp, xp.stack(norms), norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
                           "non-finite, so they cannot be clipped (pass error_if_nonfinite=False to skip this check)")
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= coef.astype(g.dtype)
    return Tensor(total)


def _vector_norm(xp, v, p):
    if p == 2.0:
        return xp.sqrt(xp.sum(v * v))
    if p == 1.0:
        return xp.sum(xp.abs(v))
    if p == 0.0:
        return xp.sum(v != 0).astype(v.dtype)
    return xp.sum(xp.abs(v) ** p) ** (1.0 / p)


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient entry into ``[-clip_value, clip_value]`` in place."""
    for g in _grads(parameters):
        backend.get_array_module(g).clip(g, -clip_value, clip_value, out=g)


def parameters_to_vector(parameters):
    """All parameters flattened and concatenated into one 1-D tensor (a copy; differentiable)."""
    from ..functions import cat
    return cat([p.reshape(-1) for p in parameters], axis=0)


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-D ``vec`` into the parameters' data, in order (in place)."""
    data = vec.data if isinstance(vec, Tensor) else vec
    offset = 0
    for p in parameters:
        n = p.numel()
        p.data[...] = data[offset:offset + n].reshape(p.shape)
        offset += n
    if offset != data.size:
        raise ValueError(f"vector_to_parameters: the vector has {data.size} entries, the parameters {offset}")
