"""All differentiable operations, one module per op family, re-exported flat (``tinyconv.functional``)."""
from . import methods  # noqa: F401  (binds Tensor operators)
from .basic import (abs, add, astype, clamp, clip, div, exp, log, matmul, max, maximum, mean, min,  # noqa: F401
                    minimum, mul, neg, pow, sqrt, sub, sum, unbroadcast, var, where)
from .conv import conv2d  # noqa: F401
from .depthwise import depthwise_conv2d  # noqa: F401
from .shape import (broadcast_to, cat, chunk, concatenate, flatten, getitem, pad, permute,  # noqa: F401
                    reshape, split, stack, transpose)
