"""tinyconv's compute kernels: arrays in, arrays out; nothing here knows about autograd or tinyconv.

Installed as the package ``tinyconv_kernels``.  Each kernel exists in up to three implementations with one
signature: ``<name>_numpy`` (the plain NumPy reference), ``<name>_cpu`` (Numba ``@njit``), ``<name>_cuda``
(``numba.cuda``).  ``get(name, target)`` returns one of them; the family modules are imported on first use,
so importing this package compiles nothing.
"""
import importlib

# kernel name -> module (one file per kernel family)
FAMILIES = {
    "im2col": "im2col",
    "col2im": "im2col",
    "depthwise_conv2d": "depthwise",
    "depthwise_conv2d_grad_input": "depthwise",
    "depthwise_conv2d_grad_weight": "depthwise",
    "depthwise_conv2d_backward": "depthwise",
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

_TARGETS = ("numpy", "cpu", "cuda")


def get(name, target):
    """The implementation of kernel ``name`` for ``target`` in ``('numpy', 'cpu', 'cuda')``."""
    if target not in _TARGETS:
        raise ValueError(f"unknown kernel target {target!r}: expected one of {_TARGETS}")
    if name not in FAMILIES:
        raise KeyError(f"unknown kernel {name!r}; known kernels: {', '.join(sorted(FAMILIES))}")
    module = importlib.import_module(f"{__name__}.{FAMILIES[name]}")
    fn = getattr(module, f"{name}_{target}", None)
    if fn is None:
        raise NotImplementedError(f"kernel {name!r} has no {target} implementation")
    return fn
