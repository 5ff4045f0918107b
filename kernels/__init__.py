"""tinyconv's compute kernels: arrays in, arrays out; nothing here knows about autograd or tinyconv.

Installed as the package ``tinyconv_kernels``.  Each kernel exists in up to three implementations with one
signature: ``<name>_numpy`` (the plain NumPy reference), ``<name>_cpu`` (Numba ``@njit``, or the strategies
that pick among kernels on the CPU), ``<name>_cuda`` (``numba.cuda``), side by side in the
family's file or, for the long families (``SPLIT_FAMILIES``), in ``<family>_cpu.py`` and ``<family>_cuda.py``
beside it; the expensive ones also have a ``<name>_shape`` twin for ``tinyconv.summary`` (returns the
multiply-accumulates and zeros of the output's shape).  ``get(name, target)`` returns one of them; the family modules are imported on first use, so
importing this package compiles nothing.  ``threads`` holds the CPU thread policy the kernels run under.

Composite kernels (``COMPOSITE``) are written over other kernels and array calls: their implementations take
the keywords ``xp`` (the array module) and ``kernel`` (name -> the primitive for the same device), which
``tinyconv.backend`` supplies.
"""
import importlib
import importlib.util

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
    "max_pool2d_values": "pooling",
    "max_pool2d_backward": "pooling",
    "avg_pool2d_forward": "pooling",
    "avg_pool2d_backward": "pooling",
    "lrn_forward": "lrn",
    "lrn_backward": "lrn",
    "erf": "special",
    "tanh": "special",
    "tanh_backward": "special",
    "relu": "activation",
    "relu6": "activation",
    "relu_backward": "activation",
    "relu6_backward": "activation",
    "sigmoid": "activation",
    "sigmoid_backward": "activation",
    "silu_forward": "activation",
    "silu_backward": "activation",
    "gelu_forward": "activation",
    "gelu_backward": "activation",
    "sgd_step": "optim",
    "batch_norm_forward": "batchnorm",
    "batch_norm_eval": "batchnorm",
    "batch_norm_backward": "batchnorm",
    "naive_conv2d": "naive",
    "naive_conv2d_backward": "naive",
    "winograd_input_transform": "winograd",
    "winograd_output_transform": "winograd",
    "winograd_output_transform_adjoint": "winograd",
    "winograd_input_transform_adjoint": "winograd",
    "winograd4_input_transform": "winograd4",
    "winograd4_output_transform": "winograd4",
    "winograd4_output_transform_adjoint": "winograd4",
    "winograd4_input_transform_adjoint": "winograd4",
}

# families too long for one file: ``<family>.py`` holds the reference (and the shape twin), ``<family>_cpu.py``
# and ``<family>_cuda.py`` the twins that are not in it, with the same kernel names
SPLIT_FAMILIES = frozenset({"depthwise", "grouped", "pooling", "winograd", "winograd4"})

COMPOSITE = frozenset({"conv2d_forward", "conv2d_backward", "gelu_forward", "gelu_backward"})
# references written over the array module ``xp`` (keyword, default NumPy): on CuPy arrays, a kernel without a
# CUDA twin runs its reference with ``xp=cupy`` (the others' references are plain operators and methods, which
# CuPy arrays answer as they are)
TAKES_XP = frozenset({"relu", "relu6", "tanh", "sigmoid", "silu_forward", "silu_backward", "batch_norm_forward",
                      "batch_norm_eval", "batch_norm_backward", "naive_conv2d", "naive_conv2d_backward", "winograd_input_transform",
                      "winograd_output_transform", "winograd_output_transform_adjoint",
                      "winograd_input_transform_adjoint", "winograd4_input_transform", "winograd4_output_transform",
                      "winograd4_output_transform_adjoint", "winograd4_input_transform_adjoint"})
# families written in NumPy calls only (strategies over other kernels, BLAS products): nothing for Numba to compile
UNCOMPILED_FAMILIES = frozenset({"conv2d", "linear"})

_TARGETS = ("numpy", "cpu", "cuda", "shape")


def takes_xp(name):
    """Whether kernel ``name``'s NumPy reference takes the array module as the keyword ``xp``."""
    return name in TAKES_XP or name in COMPOSITE


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
    family = FAMILIES[name]
    fn = getattr(importlib.import_module(f"{__name__}.{family}"), f"{name}_{target}", None)
    if fn is None and family in SPLIT_FAMILIES and target in ("cpu", "cuda"):  # a twin in a file of its own
        module = f"{__name__}.{family}_{target}"
        if importlib.util.find_spec(module) is not None:  # (winograd, winograd4 have no file of CUDA twins)
            fn = getattr(importlib.import_module(module), f"{name}_{target}", None)
    if fn is None:
        raise NotImplementedError(f"kernel {name!r} has no {target} implementation")
    return fn
