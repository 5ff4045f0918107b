"""``tinyconv.nn``: modules with PyTorch's names, arguments, defaults and state-dict keys."""
from . import init  # noqa: F401
from .module import Module, ModuleDict, ModuleList, Parameter, Sequential  # noqa: F401
from .conv import Conv2d  # noqa: F401
