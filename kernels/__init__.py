"""tinyconv's compute kernels: arrays in, arrays out; nothing here knows about autograd or tinyconv.

Installed as the package ``tinyconv_kernels``.  Each kernel exists in up to three implementations with one
signature: ``<name>_numpy`` (the plain NumPy reference), ``<name>_cpu`` (Numba ``@njit``, or the strategies
that pick among kernels on the CPU), ``<name>_cuda`` (``numba.cuda``); the expensive ones also have a
``<name>_shape`` twin for ``tinyconv.summary`` (returns the multiply-accumulates and zeros of the output's
shape).  ``get(name, target)`` returns one of them; the family modules are imported on first use, so
importing this package compiles nothing.  ``threads`` holds the CPU thread policy the kernels run under.

Composite kernels (``COMPOSITE``) are written over other kernels and array calls: their implementations take
the keywords ``xp`` (the array module) and ``kernel`` (name -> the primitive for the same device), which
``tinyconv.backend`` supplies.
"""
import importlib

# kernel name -> module (one file per kernel family)
FAMILIES = {
    "conv2d_forward": "conv2d",
    "conv2d_backward": "conv2d",
    "linear_forward": "linear",
    "linear_backward": "linear",
    "matmul": "linear",
    "im2col": "im2col",
    "col2im": "im2col",
    "depthwise_conv2d": "depthwise",
    "depthwise_conv2d_grad_input": "depthwise",
    "depthwise_conv2d_grad_weight": "depthwise",
    "depthwise_conv2d_backward": "depthwise",
    "direct_conv2d": "direct",
    "direct_conv2d_grad_input": "direct",
    "direct_conv2d_grad_weight": "direct",
    "grouped_conv2d": "grouped",
    "grouped_conv2d_grad_input": "grouped",
    "grouped_conv2d_grad_weight": "grouped",
    "max_pool2d_forward": "pooling",
    "max_pool2d_backward": "pooling",
    "avg_pool2d_forward": "pooling",
    "avg_pool2d_backward": "pooling",
    "lrn_forward": "lrn",
    "lrn_backward": "lrn",
    "erf": "special",
    "tanh": "special",
    "tanh_backward": "special",
    "relu_backward": "activation",
    "relu6_backward": "activation",
    "sgd_step": "optim",
    "batch_norm_forward": "batchnorm",
    "batch_norm_eval": "batchnorm",
    "batch_norm_backward": "batchnorm",
}

COMPOSITE = frozenset({"conv2d_forward", "conv2d_backward"})
# families written in NumPy calls only (strategies over other kernels, BLAS products): nothing for Numba to compile
UNCOMPILED_FAMILIES = frozenset({"conv2d", "linear"})

_TARGETS = ("numpy", "cpu", "cuda", "shape")


def is_composite(name):
    """Whether kernel ``name`` is built over other kernels (its implementations take ``xp`` and ``kernel``)."""
    return name in COMPOSITE


def get(name, target):
    """The implementation of kernel ``name`` for ``target`` in ``('numpy', 'cpu', 'cuda', 'shape')``;
    ``NotImplementedError`` when it has none (``tinyconv.backend`` then runs the NumPy reference)."""
    if target not in _TARGETS:
        raise ValueError(f"unknown kernel target {target!r}: expected one of {_TARGETS}")
    if name not in FAMILIES:
        raise KeyError(f"unknown kernel {name!r}; known kernels: {', '.join(sorted(FAMILIES))}")
    module = importlib.import_module(f"{__name__}.{FAMILIES[name]}")
    fn = getattr(module, f"{name}_{target}", None)
    if fn is None:
        raise NotImplementedError(f"kernel {name!r} has no {target} implementation")
    return fn
