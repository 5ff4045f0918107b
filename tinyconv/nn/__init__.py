"""``tinyconv.nn``: modules with PyTorch's names, arguments, defaults and state-dict keys."""
from . import init, utils  # noqa: F401
from .container import ModuleDict, ModuleList, Sequential  # noqa: F401
from .module import Module, Parameter  # noqa: F401
