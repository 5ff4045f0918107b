"""``tinyconv.nn``: modules with PyTorch's names, arguments, defaults and state-dict keys."""
from . import init, utils  # noqa: F401
from .container import ModuleDict, ModuleList, Sequential  # noqa: F401
from .module import Module, Parameter  # noqa: F401
from .activation import (ELU, GELU, Hardsigmoid, Hardswish, LeakyReLU, LogSoftmax, ReLU, ReLU6, Sigmoid,  # noqa: F401
                         SiLU, Softmax, Softplus, Tanh)
from .linear import ChannelShuffle, Flatten, Identity, Linear, Unflatten, ZeroPad2d  # noqa: F401
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, LayerNorm2d  # noqa: F401
from .dropout import Dropout, Dropout2d, DropPath, StochasticDepth  # noqa: F401
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, MultiMarginLoss,  # noqa: F401
                   NLLLoss, SmoothL1Loss)
from . import functional  # noqa: F401
from .pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d  # noqa: F401
from .lrn import LocalResponseNorm  # noqa: F401
from .conv import Conv2d  # noqa: F401
from .fusion import conv_norm_activation, norm_activation  # noqa: F401
from .upsample import Upsample  # noqa: F401
