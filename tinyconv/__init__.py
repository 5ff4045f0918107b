"""tinyconv: a from-scratch deep-learning framework for the classic ImageNet CNNs.

NumPy reference code for every op, Numba-JIT kernels for the hot CPU paths, CuPy on NVIDIA GPUs.
"""
from . import backend, cuda, threads  # noqa: F401
from .backend import get_array_module, manual_seed  # noqa: F401
from .threads import get_num_threads, set_num_threads  # noqa: F401
threads.tune_malloc()  # process-wide: glibc keeps freed memory for the next training step (see threads.py)
from .core import (Function, Tensor, enable_grad, inference_mode, is_grad_enabled, no_grad,  # noqa: F401
                   set_grad_enabled)
from . import functions as _functions  # noqa: F401  (binds Tensor methods)
from . import functional  # noqa: F401
from .functions import (abs, cat, chunk, clamp, clip, exp, flatten, log, matmul, maximum, mean,  # noqa: F401
                        minimum, permute, reshape, split, sqrt, squeeze, stack, sum, transpose,
                        unsqueeze, var, where)
from .functions import amax, amin, argmax, argmin, max, min  # noqa: F401
from .functions import (argsort, flip, gather, index_select, masked_fill, narrow, norm, sort, std,  # noqa: F401
                        topk, unbind)
from .functions import channel_shuffle, log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401
from .creation import (arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace,  # noqa: F401
                       ones, ones_like, rand, rand_like, randint, randn, randn_like, randperm, tensor, zeros,
                       zeros_like)
from .gradcheck import GradcheckError, gradcheck  # noqa: F401
from . import data, nn, optim  # noqa: F401
from .summary import ModelSummary, summary  # noqa: F401
from .serialization import load, save  # noqa: F401

from .idioms import (allclose, bmm, bool, device, double, equal, float, float16, float32, float64,  # noqa: F401
                     get_default_dtype, half, int, int32, int64, is_tensor, kernels_compiled, long, mm, numel,
                     uint8)

__version__ = "0.1.0"


def __getattr__(name):
    """``tinyconv.models`` and ``tinyconv.utils`` after a plain ``import tinyconv``, imported on first use
    (the model zoo is large; ``import tinyconv`` stays quick)."""
    if name in ("models", "utils"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tinyconv' has no attribute {name!r}")
