"""Batch normalisation and layer normalisation with their compact analytic backward passes.

Shapes: batch norm takes ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)`` and normalises each channel over the
``m = N * L`` (or ``N * H * W``) values that share it; layer norm normalises each sample over its last axes
(``normalized_shape``); the channels-first ``layer_norm2d`` normalises ``(N, C, H, W)`` over C at each pixel.

All three compute, over a group of ``m`` values ``x_j``,

    mu = (1/m) sum_j x_j,   var = (1/m) sum_j (x_j - mu)^2   (biased),   invstd = 1 / sqrt(var + eps),
    xhat_j = (x_j - mu) * invstd,   y_j = gamma * xhat_j + beta.

Backward.  With ``g_j = dL/dy_j * gamma`` the chain rule through ``mu`` and ``var`` gives

    dL/dx_j = g_j invstd + dL/dvar * 2 (x_j - mu) / m + dL/dmu / m,
    dL/dvar = -1/2 invstd^3 sum_k g_k (x_k - mu),    dL/dmu = -invstd sum_k g_k

(the ``mu``-dependence inside ``var`` contributes ``sum_k (x_k - mu) = 0``).  Writing ``x_k - mu = xhat_k / invstd``
and collecting terms gives the compact form (Ioffe & Szegedy, 2015; Kratzert's derivation):

    dL/dx_j = (invstd / m) * (m g_j - sum_k g_k - xhat_j sum_k g_k xhat_k).

The parameters: ``dL/dgamma = sum dL/dy * xhat`` and ``dL/dbeta = sum dL/dy`` over the same groups' positions.
In evaluation batch norm uses fixed running statistics, so it is an affine map: ``dL/dx = g * invstd``.
"""
import numpy as np

from ..backend import get_array_module, get_kernel
from ..core import Function, Tensor
from .basic import unbroadcast


def _sum(a, axes, b=None):
    """Sum of ``a`` (or of ``a * b``, without materialising the product) over ``axes``, size-1 axes kept.

    ``einsum`` reads the operands once and allocates only the small result, where ``(a * b).sum()`` would
    write and re-read a full-size temporary: these sums run over every activation of the network.
    """
    xp = get_array_module(a)
    idx = "abcdefghijkl"[:a.ndim]
    out = "".join(c for i, c in enumerate(idx) if i not in axes)
    s = xp.einsum(f"{idx}->{out}", a) if b is None else xp.einsum(f"{idx},{idx}->{out}", a, b)
    return s.reshape([1 if i in axes else n for i, n in enumerate(a.shape)])


def _normalize(x, axes, eps):
    """``(xhat, invstd, mean, var)`` of ``x`` over ``axes`` (statistics with size-1 axes, to broadcast)."""
    xp = get_array_module(x)
    m = int(np.prod([x.shape[a] for a in axes]))
    mean = _sum(x, axes) / x.dtype.type(m)
    xhat = x - mean
    var = _sum(xhat, axes, xhat) / x.dtype.type(m)  # two passes: exact even when |mean| >> std
    invstd = 1 / xp.sqrt(var + x.dtype.type(eps))
    xhat *= invstd  # (x - mean) * invstd, in place
    return xhat, invstd, mean, var


def _normalize_backward(g, xhat, k, axes):
    """The compact form of the module docstring with ``k = invstd`` times any factor constant over the group:
    ``k g - (k/m) sum g - xhat (k/m) sum(g xhat)``.  Returns ``(dx, sum g, sum g xhat)``."""
    m = int(np.prod([xhat.shape[a] for a in axes]))
    sum_g, sum_gx = _sum(g, axes), _sum(g, axes, xhat)
    gx = g * k
    gx -= xhat * (k * sum_gx / m)
    gx -= k * sum_g / m
    return gx, sum_g, sum_gx


def eval_coefficients(running_mean, running_var, gamma, eps, dt):
    """``(mean, invstd, k)`` in dtype ``dt``: batch norm in evaluation is ``y = (x - mean) k + beta`` per channel,
    with ``invstd = 1 / sqrt(running_var + eps)`` and ``k = gamma * invstd`` (``invstd`` without gamma)."""
    xp = get_array_module(running_var)
    mean = running_mean.astype(dt, copy=False)
    invstd = 1 / xp.sqrt(running_var.astype(dt, copy=False) + dt.type(eps))
    return mean, invstd, invstd if gamma is None else invstd * gamma


def _data(t):
    """The array of a Tensor (running statistics may be given as Tensors or as arrays)."""
    return t.data if isinstance(t, Tensor) else t


class BatchNorm(Function):
    """The ``batch_norm_*`` kernels on x viewed as ``(N, C, L)`` (``L = H*W``), on every device: Numba on the CPU,
    the NumPy reference (over CuPy) on a GPU.  Saved for backward: x (which the graph keeps anyway; xhat is
    recomputed from it), the channel means and inverse deviations, and gamma.

    ``activation`` ('relu' or 'relu6', evaluation only; ``batch_norm_activation``): the activation applied in
    the same pass, which then saves its output too, for the activation's mask in backward."""

    activation = None

    def forward(self, x, gamma, beta):
        C, dt = x.shape[1], x.dtype
        x3 = x.reshape(x.shape[0], C, -1)
        if self.training:  # batch statistics: mean_c, var_c over the N*L values of channel c
            y, mean, var, invstd = get_kernel("batch_norm_forward", x)(x3, gamma, beta, self.eps)
            self._update_running(mean, var, x.size // C)
        else:  # running statistics: an affine map per channel, y = (x - mean) k + beta, k = gamma * invstd
            mean, invstd, k = eval_coefficients(self.running_mean, self.running_var, gamma, self.eps, dt)
            if self.activation is None:
                y = get_kernel("batch_norm_eval", x)(x3, mean, k, beta)
            else:  # act((x - mean) k + beta), one pass
                y = self.y = get_kernel("batch_norm_eval", x)(x3, mean, k, beta, self.activation)
        self.x3, self.mean, self.invstd, self.gamma = x3, mean, invstd, gamma  # saved for backward
        return y.reshape(x.shape)

    def backward(self, gy):
        if self.activation is not None:  # through the activation first: gy [y > 0], or gy [0 < y < 6]
            gy = get_kernel(f"{self.activation}_backward", gy)(gy, self.y.reshape(gy.shape))
        # gamma is constant over each channel's group, so it joins invstd in k = gamma * invstd
        k = self.invstd if self.gamma is None else self.invstd * self.gamma
        # training: the compact form of the module docstring; evaluation: dx = dy * gamma * invstd
        gx, sum_gy, sum_gy_xhat = get_kernel("batch_norm_backward", gy)(
            gy.reshape(self.x3.shape), self.x3, self.mean, self.invstd, k, self.training)
        # dgamma = sum dy * xhat, dbeta = sum dy   (over N, H, W)
        return gx.reshape(gy.shape), None if self.gamma is None else sum_gy_xhat, sum_gy

    def _update_running(self, mean, var, m):
        """Running averages of the mean and of the *unbiased* variance ``var * m / (m - 1)``, in place."""
        if self.running_mean is not None:
            a = self.momentum
            self.running_mean[...] = (1 - a) * self.running_mean + a * mean.reshape(-1)
            self.running_var[...] = (1 - a) * self.running_var + a * var.reshape(-1) * (m / (m - 1))


def batch_norm_activation(input, running_mean, running_var, weight=None, bias=None, eps=1e-5, activation="relu"):
    """``relu(batch_norm(...))`` or ``relu6(...)`` in evaluation mode (running statistics), in one pass: the bits
    of the two ops in turn.  Not in PyTorch's API: the zoo's blocks call it through ``nn.norm_activation``."""
    if activation not in ("relu", "relu6"):
        raise ValueError(f"batch_norm_activation: activation should be 'relu' or 'relu6', got {activation!r}")
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm_activation: running_mean and running_var are required (evaluation mode)")
    C = input.shape[1] if input.ndim >= 2 else None
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and tuple(t.shape) != (C,):
            raise ValueError(f"batch_norm_activation: {name} should have shape ({C},) for input {input.shape}, "
                             f"got {tuple(t.shape)}")
    return BatchNorm.apply(input, weight, bias, running_mean=_data(running_mean), running_var=_data(running_var),
                           training=False, momentum=0.0, eps=eps, activation=activation)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation (Ioffe & Szegedy, 2015) of ``input`` ``(N, C[, L | H, W])`` per channel.

    ``training``: normalise with the batch's mean and biased variance, and (if the running buffers are
    given) update them in place: ``running = (1 - momentum) running + momentum * batch``, with the unbiased
    batch variance.  Otherwise normalise with ``running_mean`` / ``running_var`` (``(C,)``).
    ``weight`` = gamma, ``bias`` = beta, each ``(C,)`` or None.
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, ...), got {input.shape}")
    C = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and tuple(t.shape) != (C,):
            raise ValueError(f"batch_norm: {name} should have shape ({C},) for input {input.shape}, got {tuple(t.shape)}")
    if training and input.size // C <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                         f"shape {input.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var are required when not training")
    return BatchNorm.apply(input, weight, bias, running_mean=_data(running_mean), running_var=_data(running_var),
                           training=training, momentum=momentum, eps=eps)


class LayerNorm(Function):
    """Normalise over ``axes``; ``gamma``/``beta`` are viewed as ``param_shape`` to broadcast against ``x``."""

    def forward(self, x, gamma, beta):
        self.xhat, self.invstd, _, _ = _normalize(x, self.axes, self.eps)
        self.gamma = None if gamma is None else gamma.reshape(self.param_shape)
        self.gamma_shape, self.beta_shape = getattr(gamma, "shape", None), getattr(beta, "shape", None)
        if gamma is None:
            return self.xhat if beta is None else self.xhat + beta.reshape(self.param_shape)
        y = self.xhat * self.gamma
        if beta is not None:
            y += beta.reshape(self.param_shape)
        return y

    def backward(self, gy):
        # dgamma = sum dy * xhat, dbeta = sum dy   (over the positions gamma is broadcast to)
        ggamma = None if self.gamma is None else \
            unbroadcast(gy * self.xhat, self.param_shape).reshape(self.gamma_shape)
        gbeta = None if self.beta_shape is None else unbroadcast(gy, self.param_shape).reshape(self.beta_shape)
        # the statistics of each group depend on x: the compact form of the module docstring, g = dy * gamma
        g = gy if self.gamma is None else gy * self.gamma
        gx = _normalize_backward(g, self.xhat, self.invstd, self.axes)[0]
        return gx, ggamma, gbeta


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation (Ba et al., 2016): normalise each sample over its last ``len(normalized_shape)`` axes.

    ``weight``/``bias`` have shape ``normalized_shape``.
    """
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(normalized_shape)
    if tuple(input.shape[input.ndim - k:]) != normalized_shape or input.ndim < k:
        raise ValueError(f"layer_norm: expected input with trailing dimensions {normalized_shape}, "
                         f"got shape {input.shape}")
    axes = tuple(range(input.ndim - k, input.ndim))
    return LayerNorm.apply(input, weight, bias, axes=axes, param_shape=normalized_shape, eps=eps)


def layer_norm2d(input, weight=None, bias=None, eps=1e-5):
    """Channels-first layer norm (ConvNeXt): normalise ``(N, C, H, W)`` over C at every pixel;
    ``weight``/``bias`` are ``(C,)``.  Equals permuting to NHWC, ``layer_norm`` over C, permuting back."""
    if input.ndim < 2:
        raise ValueError(f"layer_norm2d: expected input of shape (N, C, H, W), got {input.shape}")
    param_shape = (input.shape[1],) + (1,) * (input.ndim - 2)
    return LayerNorm.apply(input, weight, bias, axes=(1,), param_shape=param_shape, eps=eps)
