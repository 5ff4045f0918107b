"""All differentiable operations, one module per op family, re-exported flat (``tinyconv.functional``)."""
from . import methods, tensor_methods  # noqa: F401  (bind Tensor operators and methods)
from .basic import (abs, add, astype, clamp, clip, div, exp, log, matmul, maximum, minimum, mul,  # noqa: F401
                    neg, pow, sqrt, sub, unbroadcast, where)
from .reduction import amax, amin, argmax, argmin, max, mean, min, sum, var, ValuesIndices  # noqa: F401
from .conv import conv2d, conv2d_batch_norm  # noqa: F401
from .depthwise import depthwise_conv2d  # noqa: F401
from .grouped import grouped_conv2d  # noqa: F401
from .shape import (broadcast_to, cat, chunk, concatenate, flatten, getitem, pad, permute,  # noqa: F401
                    reshape, split, squeeze, stack, transpose, unsqueeze)
from .shape import channel_shuffle  # noqa: F401
from .activation import (gelu, hardsigmoid, hardswish, leaky_relu, log_softmax, relu, relu6,  # noqa: F401
                         sigmoid, silu, softmax, softplus, swish, tanh)
from .loss import (binary_cross_entropy_with_logits, cross_entropy, mse_loss, multi_margin_loss,  # noqa: F401
                   nll_loss)
from .dropout import drop_path, dropout, dropout2d, stochastic_depth  # noqa: F401
from .normalization import batch_norm, batch_norm_activation, layer_norm, layer_norm2d  # noqa: F401
from .linear import linear  # noqa: F401
from .pooling import (adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, global_avg_pool2d,  # noqa: F401
                      max_pool2d)
from .lrn import local_response_norm  # noqa: F401
from .indexing import (argsort, contiguous, flip, gather, index_select, masked_fill, narrow, norm,  # noqa: F401
                       one_hot, repeat, sort, std, topk, unbind)
from .resize import interpolate  # noqa: F401
from .composed import (binary_cross_entropy, elu, group_norm, l1_loss, normalize,  # noqa: F401
                       smooth_l1_loss)
