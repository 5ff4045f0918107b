"""``nn.Conv2d``: a 2-D convolution layer with PyTorch's arguments, defaults, weight layout and init."""
import math

import numpy as np

from .. import creation
from ..functions.conv import _conv2d
from . import checks, init
from .module import Module, Parameter


class Conv2d(Module):
    """2-D convolution over (N, C, H, W) input, as ``torch.nn.Conv2d``.

    Parameters: ``weight`` (out_channels, in_channels/groups, KH, KW) and ``bias`` (out_channels,) unless
    ``bias=False``.  ``kernel_size``, ``stride``, ``dilation``: int or pair; ``padding``: int, pair,
    ``'valid'`` or ``'same'``.  ``groups`` splits the channels into independent convolutions;
    ``groups == in_channels`` is a depthwise convolution (run by a dedicated kernel).

    Initialisation, as PyTorch: ``kaiming_uniform_(weight, a=sqrt(5))``, i.e. ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))`` with ``fan_in = in_channels/groups * KH * KW``, and the bias from the same interval.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        where = f"Conv2d({in_channels!r}, {out_channels!r}, kernel_size={kernel_size!r})"
        self.in_channels = checks.integer(where, "in_channels", in_channels)
        self.out_channels = checks.integer(where, "out_channels", out_channels)
        self.groups = checks.integer(where, "groups", groups)
        self.kernel_size = checks.pair(where, "kernel_size", kernel_size)
        self.stride = checks.pair(where, "stride", stride)
        self.dilation = checks.pair(where, "dilation", dilation)
        if isinstance(padding, str):
            checks.choice(where, "padding", padding, ("same", "valid"))
            self.padding = padding
        else:
            self.padding = checks.pair(where, "padding", padding, minimum=0)
        self.padding_mode = padding_mode
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{where}: groups={groups} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels})")
        if padding_mode != "zeros":
            raise ValueError(f"{where}: padding_mode={padding_mode!r} is not supported (only 'zeros')")
        if padding == "same" and self.stride != (1, 1):
            raise ValueError(f"{where}: padding='same' is not supported for strided convolutions")
        checks.parameter_dtype(where, dtype)
        dtype = np.float32 if dtype is None else dtype
        device = "cpu" if device is None else device
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(creation.empty(*shape, dtype=dtype, device=device))
        self.bias = Parameter(creation.empty(self.out_channels, dtype=dtype, device=device)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default: weight ``kaiming_uniform_(a=sqrt(5))``, bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def _where(self):
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size})"

    def forward(self, input):
        where = self._check_input(input)
        return _conv2d(where, input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                       self.groups)

    def _check_input(self, input):
        """Refuse input of the wrong dtype or channels, naming the layer; returns its name for later messages."""
        where = checks.Described(self._where)
        checks.floating_input(where, input, self.weight.dtype)
        if input.ndim not in (3, 4) or input.shape[-3] != self.in_channels:
            raise ValueError(f"{where}: expected input of shape (N, {self.in_channels}, H, W), "
                             f"got {tuple(input.shape)}")
        return where

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
