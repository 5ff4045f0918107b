"""Loss functions with hand-written gradients: cross-entropy, NLL, MSE, multi-class hinge, BCE with logits.

Shapes: ``input`` is ``(N, C)`` or ``(N, C, d1, ...)`` (C classes, e.g. per-pixel ``(N, C, H, W)``), or an
unbatched ``(C,)``; class-index ``target`` is ``(N,)`` / ``(N, d1, ...)`` / ``()`` of integers.  Internally the
class axis is moved last and the rest flattened, giving ``M`` rows of ``C`` scores.

Cross-entropy and NLL share one description: a *target weight matrix* ``q`` of shape ``(M, C)`` such that
the loss of row ``i`` is ``l_i = -sum_c q_ic log p_ic``.  For a class index ``y_i``, class weights ``w`` and label
smoothing ``eps``,

    q_ic = w_c * ((1 - eps) [c == y_i] + eps / C)      (row zero where y_i == ignore_index)

(PyTorch's convention: the smoothed part is weighted by each class's own weight).  ``reduction='mean'``
divides by ``sum_i w_{y_i}`` over rows not ignored (PyTorch's weighted mean; the row count when
``weight is None``), so an all-ignored batch gives NaN as in PyTorch.  With probability targets (a float
``target`` shaped like ``input``), ``q_ic = w_c ((1 - eps) t_ic + eps / C)`` and the mean divides by ``M``.

With ``p = softmax(z)`` the gradient of ``l_i = -sum_c q_ic log p_ic`` is ``dl_i/dz_i = p_i sum_c q_ic - q_i``:
for one-hot ``q`` this is the familiar ``softmax - onehot``.
"""
import numpy as np

from ..backend import get_array_module
from ..core import Function, Tensor
from .activation import _sigmoid
from .basic import unbroadcast

_REDUCTIONS = ("none", "mean", "sum")


def _classes_last(x):
    """``(N, C, d1, ...)`` -> ``(N * d1 * ..., C)``; ``(C,)`` -> ``(1, C)``."""
    if x.ndim == 1:
        return x[None, :]
    return get_array_module(x).moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _classes_back(g, shape):
    """Inverse of ``_classes_last`` for a gradient of the input's ``shape``."""
    if len(shape) == 1:
        return g.reshape(shape)
    rest = (shape[0],) + tuple(shape[2:])
    return get_array_module(g).moveaxis(g.reshape(rest + (shape[1],)), -1, 1)


def _log_softmax_rows(z):
    xp = get_array_module(z)
    z = z - z.max(axis=1, keepdims=True)
    return z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))


def _weighted_rows(q, log_p):
    """``l_i = -sum_c q_ic log p_ic`` over the entries with ``q_ic != 0`` only: a class the target does not
    weigh contributes nothing even where ``log p_ic = -inf`` (a ``-inf`` logit, or a float32 logit 6e38 below the
    row's maximum), where the plain product would give ``0 * -inf = NaN``."""
    return -(q * get_array_module(q).where(q != 0, log_p, log_p.dtype.type(0))).sum(axis=1)


def _target_weights(name, t, weight, C, dtype, ignore_index, eps, probs):
    """``(q, denom)``: the ``(M, C)`` target weight matrix of the module docstring and the mean's divisor."""
    xp = get_array_module(t)
    w = xp.ones(C, dtype) if weight is None else weight.astype(dtype, copy=False)
    if probs:
        q = (t.astype(dtype, copy=False) * dtype.type(1 - eps) + dtype.type(eps / C)) * w
        return q, dtype.type(q.shape[0])
    t = t.reshape(-1)
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= C))
    # a deliberate difference between devices: on the host a bad target raises at once; on a GPU (below) it
    # makes the loss NaN, since testing it here would make the host wait for the device at every step
    if xp is np and bad.any():
        index = int(t[bad][0])
        raise IndexError(f"{name}: target index {index} is out of range for {C} classes "
                         f"(expected 0 <= target < {C}, or ignore_index={ignore_index})")
    t = xp.where(keep & ~bad, t, 0)
    w_y = w[t] * keep
    if xp is not np:
        # On a GPU, asking ``bad.any()`` would make the host wait for the device at every step; instead an
        # out-of-range target turns the loss into NaN, which the training loop reports (PyTorch's CUDA
        # kernels raise an asynchronous device-side assert for it, just as late).
        w_y = xp.where(bad, dtype.type(np.nan), w_y)
    q = xp.zeros((t.shape[0], C), dtype) if eps == 0 else (dtype.type(eps / C) * w) * keep[:, None].astype(dtype)
    q[xp.arange(t.shape[0]), t] += dtype.type(1 - eps) * w_y
    return q, w_y.sum()


def _reduce(losses, reduction, denom):
    xp = get_array_module(losses)
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return xp.asarray(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return xp.asarray(total / denom).astype(losses.dtype)


def _reduce_grad(gy, reduction, denom, shape):
    """The factor by which each element's loss enters the output: ``gy`` itself, or ``gy / denom``."""
    if reduction == "none":
        return gy.reshape(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return gy / denom if reduction == "mean" else gy


def _check_reduction(name, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_class_target(name, input, target, allow_probs=False):
    """Validate ``target`` against ``input`` (N, C, d...); returns True for probability targets."""
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target))
    if input.ndim < 1:
        raise ValueError(f"{name}: expected input of shape (N, C) or (N, C, d1, ...), got a scalar")
    if target.dtype.kind == "f" and allow_probs:
        if target.shape != input.shape:
            raise ValueError(f"{name}: probability targets (float dtype) must have the input's shape "
                             f"{input.shape}, got {target.shape}")
        return target, True
    if target.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected target of an integer dtype (class indices) "
                        f"{'or float probabilities shaped like the input ' if allow_probs else ''}"
                        f"but got dtype {target.dtype}")
    expected = () if input.ndim == 1 else (input.shape[0],) + input.shape[2:]
    if target.shape != expected:
        raise ValueError(f"{name}: expected target of shape {expected} for input of shape {input.shape}, "
                         f"got {target.shape}")
    return target, False


class CrossEntropy(Function):
    def forward(self, x, target, weight):
        z = _classes_last(x)
        log_p = _log_softmax_rows(z)
        self.q, self.denom = _target_weights("cross_entropy", _classes_last(target) if self.probs else target,
                                             weight, z.shape[1], x.dtype, self.ignore_index,
                                             self.label_smoothing, self.probs)
        self.p, self.x_shape = get_array_module(x).exp(log_p), x.shape
        self.loss_shape = (x.shape[0],) + x.shape[2:] if x.ndim > 1 else ()
        losses = _weighted_rows(self.q, log_p)
        return _reduce(losses.reshape(self.loss_shape), self.reduction, self.denom)

    def backward(self, gy):
        # dl_i/dz_i = softmax(z_i) * sum_c q_ic - q_i    (softmax - onehot for a plain one-hot target)
        g = self.p * self.q.sum(axis=1, keepdims=True) - self.q
        g *= _reduce_grad(gy, self.reduction, self.denom, (-1, 1))
        return _classes_back(g, self.x_shape), None, None


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy on logits, fused: ``l_i = -sum_c q_ic log softmax(x_i)_c`` (see module docstring).

    ``input``: logits ``(N, C)`` / ``(N, C, d1, ...)`` / ``(C,)``.  ``target``: class indices ``(N, d1, ...)``
    (integers; ``ignore_index`` rows contribute nothing) or class probabilities shaped like ``input``.
    ``weight``: ``(C,)`` per-class weights.  ``label_smoothing``: ``eps`` in ``[0, 1]``.  The log-softmax
    subtracts each row's maximum, so logits of +-1e4 give finite losses and gradients.
    """
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    target, probs = _check_class_target("cross_entropy", input, target, allow_probs=True)
    return CrossEntropy.apply(input, target, weight, ignore_index=ignore_index, reduction=reduction,
                              label_smoothing=label_smoothing, probs=probs)


class NLLLoss(Function):
    def forward(self, x, target, weight):
        log_p = _classes_last(x)
        self.q, self.denom = _target_weights("nll_loss", target, weight, log_p.shape[1], x.dtype,
                                             self.ignore_index, 0.0, False)
        self.x_shape = x.shape
        losses = _weighted_rows(self.q, log_p)
        return _reduce(losses.reshape((x.shape[0],) + x.shape[2:] if x.ndim > 1 else ()), self.reduction, self.denom)

    def backward(self, gy):
        # l_i = -sum_c q_ic x_ic:  dl_i/dx_i = -q_i
        g = -self.q * _reduce_grad(gy, self.reduction, self.denom, (-1, 1))
        return _classes_back(g, self.x_shape), None, None


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities: ``l_i = -w_{y_i} input[i, y_i]`` (mean divides by
    ``sum w_{y_i}``).  Shapes as ``cross_entropy``; ``cross_entropy(x, y) == nll_loss(log_softmax(x, 1), y)``."""
    _check_reduction("nll_loss", reduction)
    target, _ = _check_class_target("nll_loss", input, target)
    return NLLLoss.apply(input, target, weight, ignore_index=ignore_index, reduction=reduction)


class MSELoss(Function):
    def forward(self, x, t):
        self.d = x - t
        self.x_shape, self.t_shape = x.shape, t.shape
        return _reduce(self.d * self.d, self.reduction, x.dtype.type(self.d.size))

    def backward(self, gy):
        # d(x - t)^2 / dx = 2 (x - t) = -d(x - t)^2 / dt
        g = 2 * self.d * _reduce_grad(gy, self.reduction, self.d.dtype.type(self.d.size), self.d.shape)
        return unbroadcast(g, self.x_shape), unbroadcast(-g, self.t_shape)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error ``(input - target)^2``, reduced (``target`` broadcasts against ``input``)."""
    _check_reduction("mse_loss", reduction)
    return MSELoss.apply(input, target, reduction=reduction)


class MultiMargin(Function):
    """``l_i = sum_{c != y_i} w_{y_i} max(0, margin - x_{i,y_i} + x_ic)^p / C``."""

    def forward(self, x, target, weight):
        xp = get_array_module(x)
        s = x.reshape(-1, x.shape[-1])
        M, C = s.shape
        t = target.reshape(-1)
        if ((t < 0) | (t >= C)).any():
            raise IndexError(f"multi_margin_loss: target index {int(t[(t < 0) | (t >= C)][0])} is out of range "
                             f"for {C} classes (expected 0 <= target < {C})")
        rows = xp.arange(M)
        h = xp.maximum(self.margin - s[rows, t][:, None] + s, 0).astype(x.dtype, copy=False)
        h[rows, t] = 0
        self.wy = (xp.ones(M, x.dtype) if weight is None else weight.astype(x.dtype)[t])[:, None] / C
        self.h, self.t, self.x_shape = h, t, x.shape
        losses = (self.wy * h ** self.p).sum(axis=1)
        return _reduce(losses.reshape(x.shape[:-1]), self.reduction, x.dtype.type(M))

    def backward(self, gy):
        xp = get_array_module(gy)
        M = self.h.shape[0]
        # d/dx_ic = w p h_ic^(p-1) / C where h_ic > 0 (c != y);  d/dx_iy = -sum_c of those
        g = self.wy * self.p * self.h ** (self.p - 1) * (self.h > 0)
        g[xp.arange(M), self.t] = -g.sum(axis=1)
        g *= _reduce_grad(gy, self.reduction, gy.dtype.type(M), (-1, 1))
        return g.reshape(self.x_shape), None, None


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    """Multi-class hinge loss (Weston & Watkins): ``l_i = sum_{c != y} w_y max(0, margin - x_y + x_c)^p / C``.

    ``input``: ``(N, C)`` or ``(C,)`` scores; ``target``: ``(N,)`` or ``()`` class indices; ``p`` is 1 or 2.
    """
    _check_reduction("multi_margin_loss", reduction)
    if p not in (1, 2):
        raise ValueError(f"multi_margin_loss: only p == 1 and p == 2 are supported, got {p}")
    if input.ndim not in (1, 2):
        raise ValueError(f"multi_margin_loss: expected input of shape (N, C) or (C,), got {input.shape}")
    target, _ = _check_class_target("multi_margin_loss", input, target)
    return MultiMargin.apply(input, target, weight, p=p, margin=margin, reduction=reduction)


class BCEWithLogits(Function):
    """``l = w [(1 - t) x + (1 + (pw - 1) t) softplus(-x)]`` = ``-w [pw t log s(x) + (1 - t) log(1 - s(x))]``."""

    def forward(self, x, t, weight, pos_weight):
        xp = get_array_module(x)
        self.sp = xp.log1p(xp.exp(-abs(x))) + xp.maximum(-x, 0)  # softplus(-x) = -log sigma(x), stably
        self.pw1 = 0 if pos_weight is None else pos_weight.astype(x.dtype, copy=False) - 1
        self.w = 1 if weight is None else weight.astype(x.dtype, copy=False)
        self.x, self.t = x, t
        losses = self.w * ((1 - t) * x + (1 + self.pw1 * t) * self.sp)
        losses = xp.broadcast_to(losses, x.shape).astype(x.dtype, copy=False)
        return _reduce(losses, self.reduction, x.dtype.type(x.size))

    def backward(self, gy):
        scale = self.w * _reduce_grad(gy, self.reduction, gy.dtype.type(self.x.size), self.x.shape)
        # dl/dx = w [(1 - t) - (1 + (pw - 1) t) sigma(-x)]     (= w (sigma(x) - t) without pos_weight)
        gx = scale * ((1 - self.t) - (1 + self.pw1 * self.t) * _sigmoid(-self.x))
        # dl/dt = w [-x + (pw - 1) softplus(-x)]
        gt = scale * (-self.x + self.pw1 * self.sp)
        return gx.astype(self.x.dtype, copy=False), gt.astype(self.t.dtype, copy=False), None, None


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy, fused and stable:
    ``l = -w [pos_weight t log sigma(x) + (1 - t) log(1 - sigma(x))]``, with ``log sigma(x) = -softplus(-x)``.

    ``target`` has ``input``'s shape (probabilities in [0, 1]); ``weight`` broadcasts against it;
    ``pos_weight`` (``(C,)``, broadcast along the last axis) weighs the positive term.
    """
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"binary_cross_entropy_with_logits: target size {tuple(target.shape)} must be the same "
                         f"as input size {tuple(input.shape)}")
    return BCEWithLogits.apply(input, target, weight, pos_weight, reduction=reduction)
