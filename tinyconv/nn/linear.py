"""The fully connected layer and the parameter-free shape layers that sit around it in a CNN:
``Linear``, ``Identity``, ``Flatten``, ``Unflatten``, ``ZeroPad2d`` and ShuffleNet's ``ChannelShuffle``."""
import math

import numpy as np

from .. import functions as F
from ..creation import empty
from . import checks, init
from .module import Module, Parameter


class Linear(Module):
    """``y = x W^T + b``; ``weight`` ``(out_features, in_features)``, ``bias`` ``(out_features,)``.

    Initialisation as PyTorch: ``kaiming_uniform_(weight, a=sqrt(5))``, i.e. ``U(-1/sqrt(in), 1/sqrt(in))``,
    and ``bias ~ U(-1/sqrt(in), 1/sqrt(in))``.
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        where = f"Linear(in_features={in_features!r}, out_features={out_features!r})"
        self.in_features = checks.integer(where, "in_features", in_features)
        self.out_features = checks.integer(where, "out_features", out_features)
        checks.parameter_dtype(where, dtype)
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
        name = checks.Described(self._name)
        checks.floating_input(name, input, self.weight.dtype)
        if input.ndim < 1 or input.shape[-1] != self.in_features:
            raise ValueError(f"{name}: expected input with last dimension {self.in_features}, "
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
        where = f"Flatten(start_dim={start_dim!r}, end_dim={end_dim!r})"
        self.start_dim = checks.integer(where, "start_dim", start_dim, minimum=None)
        self.end_dim = checks.integer(where, "end_dim", end_dim, minimum=None)

    def forward(self, input):
        d = max(input.ndim, 1)
        start, end = self.start_dim % d if -d <= self.start_dim < d else None, \
            self.end_dim % d if -d <= self.end_dim < d else None
        if start is None or end is None or start > end:
            raise ValueError(f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}): for an input of "
                             f"{input.ndim} dimensions {tuple(input.shape)} both must lie in [{-d}, {d - 1}] with "
                             f"start_dim not after end_dim")
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split axis ``dim`` into ``unflattened_size`` (one entry may be -1)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        where = f"Unflatten(dim={dim!r}, unflattened_size={unflattened_size!r})"
        self.dim = checks.integer(where, "dim", dim, minimum=None)
        if not isinstance(unflattened_size, (tuple, list)) or not unflattened_size:
            raise TypeError(f"{where}: unflattened_size must be a non-empty tuple or list of sizes")
        sizes = tuple(checks.integer(where, "unflattened_size entry", v, minimum=-1) for v in unflattened_size)
        if 0 in sizes or sizes.count(-1) > 1:
            raise ValueError(f"{where}: the sizes must be positive, with at most one -1, got {sizes}")
        self.unflattened_size = sizes

    def forward(self, input):
        if not -input.ndim <= self.dim < input.ndim:
            raise ValueError(f"Unflatten(dim={self.dim}): expected an input with axis {self.dim}, got shape "
                             f"{tuple(input.shape)}")
        d = self.dim % input.ndim
        known = math.prod(s for s in self.unflattened_size if s != -1)
        n = input.shape[d]
        if (n != known) if -1 not in self.unflattened_size else (n % known != 0):
            raise ValueError(f"Unflatten(dim={self.dim}, unflattened_size={self.unflattened_size}): axis {d} of "
                             f"the input, of size {n}, cannot be split into {self.unflattened_size}")
        return F.reshape(input, input.shape[:d] + self.unflattened_size + input.shape[d + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class ZeroPad2d(Module):
    """Pad the last two axes with zeros: ``padding`` an int or ``(left, right, top, bottom)``."""

    def __init__(self, padding):
        super().__init__()
        where = f"ZeroPad2d({padding!r})"
        self.padding = (padding,) * 4 if not isinstance(padding, (tuple, list)) else tuple(padding)
        if len(self.padding) != 4:
            raise ValueError(f"{where}: padding must be an int or a 4-tuple (left, right, top, bottom), "
                             f"got {padding!r}")
        self.padding = tuple(checks.integer(where, "padding", p, minimum=None) for p in self.padding)  # < 0 crops

    def forward(self, input):
        left, right, top, bottom = self.padding
        if input.ndim < 2 or input.shape[-1] + left + right < 0 or input.shape[-2] + top + bottom < 0:
            raise ValueError(f"ZeroPad2d({self.padding}): an input of shape {tuple(input.shape)} is too small "
                             f"to crop by these negative paddings")
        return F.pad(input, self.padding, value=0.0)

    def extra_repr(self):
        return f"{self.padding}"


class ChannelShuffle(Module):
    """ShuffleNet's channel shuffle over ``groups`` groups (see ``tinyconv.functional.channel_shuffle``)."""

    def __init__(self, groups):
        super().__init__()
        self.groups = checks.integer(f"ChannelShuffle({groups!r})", "groups", groups)

    def forward(self, input):
        if input.ndim < 2 or input.shape[1] % self.groups:
            raise ValueError(f"ChannelShuffle({self.groups}): the channels must divide into groups={self.groups}, "
                             f"got input of shape {tuple(input.shape)}")
        return F.channel_shuffle(input, self.groups)

    def extra_repr(self):
        return f"groups={self.groups}"
