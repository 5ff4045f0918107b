"""The fully connected layer and the parameter-free shape layers that sit around it in a CNN:
``Linear``, ``Identity``, ``Flatten``, ``Unflatten``, ``ZeroPad2d`` and ShuffleNet's ``ChannelShuffle``."""
import math

import numpy as np

from .. import functions as F
from ..creation import empty
from . import init
from .module import Module, Parameter


class Linear(Module):
    """``y = x W^T + b``; ``weight`` ``(out_features, in_features)``, ``bias`` ``(out_features,)``.

    Initialisation as PyTorch: ``kaiming_uniform_(weight, a=sqrt(5))``, i.e. ``U(-1/sqrt(in), 1/sqrt(in))``,
    and ``bias ~ U(-1/sqrt(in), 1/sqrt(in))``.
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        kw = dict(dtype=dtype or np.float32, device=device or "cpu")
        self.weight = Parameter(empty(out_features, in_features, **kw))
        if bias:
            self.bias = Parameter(empty(out_features, **kw))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        if input.ndim < 1 or input.shape[-1] != self.in_features:
            raise ValueError(f"{self._name()}: expected input with last dimension {self.in_features}, "
                             f"got shape {tuple(input.shape)}")
        return F.linear(input, self.weight, self.bias)

    def _name(self):
        return f"Linear(in_features={self.in_features}, out_features={self.out_features})"

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input (arguments are accepted and ignored, as PyTorch)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Flatten(Module):
    """Merge axes ``start_dim..end_dim`` (by default all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split axis ``dim`` into ``unflattened_size`` (one entry may be -1)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input):
        d = self.dim % input.ndim
        return F.reshape(input, input.shape[:d] + self.unflattened_size + input.shape[d + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class ZeroPad2d(Module):
    """Pad the last two axes with zeros: ``padding`` an int or ``(left, right, top, bottom)``."""

    def __init__(self, padding):
        super().__init__()
        self.padding = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        if len(self.padding) != 4:
            raise ValueError(f"ZeroPad2d: padding must be an int or a 4-tuple (left, right, top, bottom), "
                             f"got {padding!r}")

    def forward(self, input):
        return F.pad(input, self.padding, value=0.0)

    def extra_repr(self):
        return f"{self.padding}"


class ChannelShuffle(Module):
    """ShuffleNet's channel shuffle over ``groups`` groups (see ``tinyconv.functional.channel_shuffle``)."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, input):
        return F.channel_shuffle(input, self.groups)

    def extra_repr(self):
        return f"groups={self.groups}"
