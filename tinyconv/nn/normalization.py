"""Normalisation layers: ``BatchNorm1d``, ``BatchNorm2d``, ``LayerNorm`` and the channels-first ``LayerNorm2d``.

Parameters and buffers carry PyTorch's names, so torchvision state dicts load by key: batch norm has
``weight`` (gamma), ``bias`` (beta), buffers ``running_mean``, ``running_var`` and ``num_batches_tracked``
(int64); layer norm has ``weight`` and ``bias``.
"""
import numpy as np

from .. import functions as F
from ..core import Tensor
from ..creation import empty, ones, zeros
from . import checks, init
from .module import Module, Parameter


class _BatchNorm(Module):
    """Batch normalisation over channel axis 1 (see ``tinyconv.functions.normalization``).

    Training: normalise with the batch statistics; with ``track_running_stats`` update
    ``running = (1 - momentum) running + momentum * batch`` (unbiased variance), or with ``momentum=None`` the
    cumulative average ``running += (batch - running) / num_batches_tracked``.  Evaluation: use the running
    statistics (the batch's when ``track_running_stats=False``).  ``bias=False`` (keyword, PyTorch >= 2.6)
    keeps gamma without beta.  The ``repr`` is PyTorch's, ``bias=`` included.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True):
        super().__init__()
        where = f"{type(self).__name__}({num_features!r})"
        self.num_features = checks.integer(where, "num_features", num_features)
        self.eps = checks.real(where, "eps", eps, low=0.0, low_open=True)
        self.momentum = checks.real(where, "momentum", momentum, 0.0, 1.0, optional=True)
        checks.parameter_dtype(where, dtype)
        self.affine, self.track_running_stats = affine, track_running_stats
        kw = dict(dtype=dtype or np.float32, device=device or "cpu")
        if affine:
            self.weight = Parameter(empty(num_features, **kw))
        else:
            self.register_parameter("weight", None)
        if affine and bias:
            self.bias = Parameter(empty(num_features, **kw))
        else:
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, **kw))
            self.register_buffer("running_var", ones(num_features, **kw))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        self._check_input(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        use_batch_stats = self.training or not self.track_running_stats
        track = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if track else None, self.running_var if track else None,
                            self.weight, self.bias, use_batch_stats, factor, self.eps)

    def _check_input(self, input):
        param = self.weight if self.weight is not None else self.running_mean
        checks.floating_input(checks.Described(lambda: f"{type(self).__name__}({self.num_features})"), input,
                              None if param is None else param.dtype)
        if input.ndim not in self._ndims or input.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected input of shape "
                             f"{self._expected}, got {tuple(input.shape)}")

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm of ``(N, C)`` features or ``(N, C, L)`` sequences, per channel C."""

    _ndims = (2, 3)
    _expected = property(lambda self: f"(N, {self.num_features}) or (N, {self.num_features}, L)")


class BatchNorm2d(_BatchNorm):
    """Batch norm of ``(N, C, H, W)`` feature maps, per channel C over N, H, W."""

    _ndims = (4,)
    _expected = property(lambda self: f"(N, {self.num_features}, H, W)")


class LayerNorm(Module):
    """Layer normalisation of each sample over its last axes ``normalized_shape`` (Ba et al., 2016)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        where = f"{type(self).__name__}({normalized_shape!r})"
        if not isinstance(normalized_shape, (tuple, list)):
            normalized_shape = (normalized_shape,)
        shape = tuple(checks.integer(where, "normalized_shape", n) for n in normalized_shape)
        if not shape:
            raise ValueError(f"{where}: normalized_shape must not be empty")
        self.normalized_shape, self.elementwise_affine = shape, elementwise_affine
        self.eps = checks.real(where, "eps", eps, low=0.0, low_open=True)
        checks.parameter_dtype(where, dtype)
        kw = dict(dtype=dtype or np.float32, device=device or "cpu")
        if elementwise_affine:
            self.weight = Parameter(empty(*shape, **kw))
        else:
            self.register_parameter("weight", None)
        if elementwise_affine and bias:
            self.bias = Parameter(empty(*shape, **kw))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        checks.floating_input(checks.Described(lambda: f"{type(self).__name__}({self.extra_repr()})"), input,
                              None if self.weight is None else self.weight.dtype)
        k = len(self.normalized_shape)
        if input.ndim < k or tuple(input.shape[input.ndim - k:]) != self.normalized_shape:
            raise ValueError(f"{type(self).__name__}({self.extra_repr()}): expected input with trailing "
                             f"dimensions {self.normalized_shape}, got shape {tuple(input.shape)}")
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class LayerNorm2d(LayerNorm):
    """Channels-first layer norm (ConvNeXt): normalise ``(N, C, H, W)`` over C at every pixel.

    ``LayerNorm2d(C)`` holds ``weight``/``bias`` of shape ``(C,)`` like torchvision's ``LayerNorm2d`` and equals
    ``x.permute(0, 2, 3, 1) -> LayerNorm(C) -> permute back``, without the two transposes.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__(normalized_shape, eps, elementwise_affine, bias, device, dtype)
        if len(self.normalized_shape) != 1:
            raise ValueError(f"LayerNorm2d: normalized_shape must be the channel count C, got {normalized_shape!r}")

    def forward(self, input):
        checks.floating_input(checks.Described(lambda: f"{type(self).__name__}({self.extra_repr()})"), input,
                              None if self.weight is None else self.weight.dtype)
        C = self.normalized_shape[0]
        if input.ndim != 4 or input.shape[1] != C:
            raise ValueError(f"{type(self).__name__}({self.extra_repr()}): expected input of shape "
                             f"(N, {C}, H, W), got {tuple(input.shape)}")
        return F.layer_norm2d(input, self.weight, self.bias, self.eps)


class GroupNorm(Module):
    """Group normalisation (Wu & He, 2018) of (N, C, ...) over ``num_groups`` groups of channels, with a
    per-channel affine ``weight`` and ``bias`` (``tinyconv.functional.group_norm``)."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None):
        super().__init__()
        where = f"GroupNorm({num_groups!r}, {num_channels!r})"
        self.num_groups = checks.integer(where, "num_groups", num_groups)
        self.num_channels = checks.integer(where, "num_channels", num_channels)
        if self.num_channels % self.num_groups:
            raise ValueError(f"{where}: num_channels must be divisible by num_groups")
        self.eps, self.affine = checks.real(where, "eps", eps, low=0.0, low_open=True), affine
        checks.parameter_dtype(where, dtype)
        kw = dict(dtype=dtype or np.float32, device=device or "cpu")
        if affine:
            self.weight = Parameter(empty(self.num_channels, **kw))
            self.bias = Parameter(empty(self.num_channels, **kw))
            init.ones_(self.weight)
            init.zeros_(self.bias)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input):
        where = f"GroupNorm({self.extra_repr()})"
        checks.floating_input(where, input, None if self.weight is None else self.weight.dtype)
        if input.ndim < 2 or input.shape[1] != self.num_channels:
            raise ValueError(f"{where}: expected input (N, {self.num_channels}, ...), got shape {input.shape}")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
