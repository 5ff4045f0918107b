"""``tinyconv.nn``: modules with PyTorch's names, arguments, defaults and state-dict keys."""
from . import init  # noqa: F401
from .module import Module, ModuleDict, ModuleList, Parameter, Sequential  # noqa: F401
from .pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d  # noqa: F401
from .lrn import LocalResponseNorm  # noqa: F401
