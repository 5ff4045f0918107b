"""Pooling layers (no parameters), with PyTorch's names, arguments, defaults and ``repr``.

Each layer calls the op of ``tinyconv.functions.pooling``; its errors name the layer, e.g.
``MaxPool2d(kernel_size=3, stride=2, padding=0, dilation=1, ceil_mode=False): expected input of shape
(N, C, H, W) or (C, H, W), got (3, 224)``.
"""
from ..functions import pooling as P
from . import checks
from .module import Module


def _check_window(layer, kernel_size, stride, padding, dilation=1):
    """The constructor's checks of a pooling window (the op checks them against the input again)."""
    kernel = checks.pair(layer, "kernel_size", kernel_size)
    if stride is not None and stride != []:
        checks.pair(layer, "stride", stride)
    pad = checks.pair(layer, "padding", padding, minimum=0)
    checks.pair(layer, "dilation", dilation)
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(f"{layer}: padding should be at most half of kernel_size, got padding={padding!r}")


def _check_output_size(layer, output_size):
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2:
        raise ValueError(f"{layer}: output_size must be an int or a pair, got {output_size!r}")
    for v in sizes:
        if v is not None:
            checks.integer(layer, "output_size", v)


class MaxPool2d(Module):
    """2-D max pooling, see ``tinyconv.functional.max_pool2d``; ``stride`` defaults to ``kernel_size``.

    AlexNet's overlapping pooling is ``MaxPool2d(3, stride=2)``; VGG's is ``MaxPool2d(2)``.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        _check_window(f"MaxPool2d(kernel_size={kernel_size!r})", kernel_size, stride, padding, dilation)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None and stride != [] else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, x):
        checks.floating_input(self, x)
        return P._max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                             self.return_indices, self)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """2-D average pooling, see ``tinyconv.functional.avg_pool2d`` (PyTorch's divisor rules)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        where = f"AvgPool2d(kernel_size={kernel_size!r})"
        _check_window(where, kernel_size, stride, padding)
        if divisor_override is not None and checks.integer(where, "divisor_override", divisor_override, None) == 0:
            raise ValueError(f"{where}: divisor_override must not be zero")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None and stride != [] else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x):
        checks.floating_input(self, x)
        return P._avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                             self.count_include_pad, self.divisor_override, self)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, see ``tinyconv.functional.adaptive_avg_pool2d``.

    ``AdaptiveAvgPool2d(1)`` is global average pooling (GoogLeNet, ResNet); ``AdaptiveAvgPool2d((7, 7))``
    lets torchvision's AlexNet and VGG classifiers accept any input size.
    """

    def __init__(self, output_size):
        super().__init__()
        _check_output_size(f"AdaptiveAvgPool2d({output_size!r})", output_size)
        self.output_size = output_size

    def forward(self, x):
        checks.floating_input(self, x)
        return P._adaptive_avg_pool2d(x, self.output_size, self)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """Max pooling to a fixed output size, see ``tinyconv.functional.adaptive_max_pool2d``."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        _check_output_size(f"AdaptiveMaxPool2d({output_size!r})", output_size)
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, x):
        checks.floating_input(self, x)
        return P._adaptive_max_pool2d(x, self.output_size, self.return_indices, self)

    def extra_repr(self):
        return f"output_size={self.output_size}"
