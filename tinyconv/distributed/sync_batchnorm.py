"""``SyncBatchNorm``: batch normalisation whose statistics are those of the global batch, across all ranks.

Shapes: x is ``(N, C, *)`` on each rank, N may differ between ranks; ``M = sum_r N_r * prod(*)`` values per
channel in the global batch.  Forward, per channel (two reductions, the exact two-pass variance):

    mu = (1/M) sum_{all ranks} x,   var = (1/M) sum_{all ranks} (x - mu)^2,   invstd = 1 / sqrt(var + eps),
    xhat = (x - mu) invstd,   y = gamma xhat + beta.

Backward.  Batch norm's compact gradient (``tinyconv.functions.normalization``) sums over the group that
shares the statistics, here the global batch; with ``dy`` the gradient each rank's own loss sends back,

    dx = gamma invstd (dy - (1/M) sum_{all ranks} dy - xhat (1/M) sum_{all ranks} dy xhat),

so backward reduces the two per-channel sums ``sum dy`` and ``sum dy xhat`` in one all-reduce.  This is
PyTorch's convention: each rank back-propagates its own loss L_r, whose mean over ranks L is the training
objective; dx above is P times dL/dx, and ``DistributedDataParallel``'s division by P of every parameter
gradient gives exactly dL/dW.  ``dgamma = sum dy xhat`` and ``dbeta = sum dy`` are the rank's local sums,
averaged by DDP like every other gradient.
"""
from ..backend import get_array_module
from ..core import Function
from ..nn.module import Module
from ..nn.normalization import _BatchNorm
from . import comm


def _channel_sum(a, b=None):
    """Per-channel sum of ``a`` (or of ``a * b``) over every axis but 1, as a ``(C,)`` array."""
    xp = get_array_module(a)
    idx = "abcdefghijkl"[:a.ndim]
    return xp.einsum(f"{idx}->b", a) if b is None else xp.einsum(f"{idx},{idx}->b", a, b)


class SyncBatchNormFn(Function):
    """Training-mode batch norm over the global batch; ``running_mean``/``running_var`` (arrays or None)
    are updated in place with the global statistics, ``momentum``, ``eps`` as ``batch_norm``."""

    def forward(self, x, gamma, beta):
        xp, C, dt = get_array_module(x), x.shape[1], x.dtype
        self.shape = (1, C) + (1,) * (x.ndim - 2)
        group = comm.backend_for(x)
        stats = xp.concatenate([_channel_sum(x), xp.full(1, x.size // C, dtype=dt)])
        group.allreduce(stats)
        self.M = float(stats[C])
        mean = stats[:C] / dt.type(self.M)
        self.xhat = x - mean.reshape(self.shape)
        sq = _channel_sum(self.xhat, self.xhat)
        group.allreduce(sq)
        var = sq / dt.type(self.M)  # biased, the normaliser
        self.invstd = 1 / xp.sqrt(var + dt.type(self.eps))
        self.xhat *= self.invstd.reshape(self.shape)
        if self.running_mean is not None:
            a, M = self.momentum, self.M
            self.running_mean[...] = (1 - a) * self.running_mean + a * mean
            self.running_var[...] = (1 - a) * self.running_var + a * var * (M / (M - 1))  # unbiased
        self.gamma = gamma
        y = self.xhat if gamma is None else self.xhat * gamma.reshape(self.shape)
        return y if beta is None else y + beta.reshape(self.shape)

    def backward(self, gy):
        xp, C = get_array_module(gy), gy.shape[1]
        local = xp.concatenate([_channel_sum(gy), _channel_sum(gy, self.xhat)])
        # dgamma = sum dy xhat, dbeta = sum dy   (this rank's sums; DDP averages them)
        dgamma = None if self.gamma is None else local[C:].copy()
        dbeta = local[:C].copy()
        comm.backend_for(gy).allreduce(local)  # sum over all ranks of sum dy and sum dy xhat
        mean_g = (local[:C] / self.M).reshape(self.shape)
        mean_gx = (local[C:] / self.M).reshape(self.shape)
        k = self.invstd if self.gamma is None else self.invstd * self.gamma
        # dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat))   (means over the global batch)
        gx = (gy - mean_g - self.xhat * mean_gx) * k.reshape(self.shape)
        return gx, dgamma, dbeta


class SyncBatchNorm(_BatchNorm):
    """Batch norm over ``(N, C, *)`` whose training statistics are the global batch's, across all ranks.

    PyTorch's name, arguments and state-dict keys (those of ``BatchNorm2d``); the ``process_group`` is the
    world.  In evaluation, or when the process group is not initialised, it is an ordinary batch norm.
    """

    _ndims = (2, 3, 4, 5)
    _expected = property(lambda self: f"(N, {self.num_features}, *)")

    def forward(self, input):
        if not (self.training and comm.is_initialized()):
            return super().forward(input)
        self._check_input(input)
        if input.size // input.shape[1] * comm.get_world_size() <= 1:
            raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel when training, got "
                             f"input of shape {tuple(input.shape)} on {comm.get_world_size()} rank(s)")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.data)
        run = self.track_running_stats
        return SyncBatchNormFn.apply(input, self.weight, self.bias,
                                     running_mean=self.running_mean.data if run else None,
                                     running_var=self.running_var.data if run else None,
                                     momentum=factor, eps=self.eps)

    @classmethod
    def convert_sync_batchnorm(cls, module):
        """``module`` with every ``BatchNorm1d/2d`` replaced by a ``SyncBatchNorm`` holding the same
        parameters and buffers (the same Tensor objects); the module itself is returned if it is one."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            sync = cls(module.num_features, module.eps, module.momentum, module.affine,
                       module.track_running_stats, bias=module.bias is not None)
            for name in ("weight", "bias"):
                sync._parameters[name] = module._parameters[name]
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                sync._buffers[name] = module._buffers[name]
            sync.training = module.training
            return sync
        if isinstance(module, Module):
            for name, child in list(module._modules.items()):
                if child is not None:
                    module._modules[name] = cls.convert_sync_batchnorm(child)
        return module


def convert_sync_batchnorm(module):
    """``SyncBatchNorm.convert_sync_batchnorm(module)`` (PyTorch spells it only as the class method)."""
    return SyncBatchNorm.convert_sync_batchnorm(module)

