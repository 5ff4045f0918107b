"""tinyconv: a from-scratch deep-learning framework for the classic ImageNet CNNs.

NumPy reference code for every op, Numba-JIT kernels for the hot CPU paths, CuPy on NVIDIA GPUs.
"""
from . import backend, cuda, threads  # noqa: F401
from .backend import get_array_module, manual_seed  # noqa: F401
from .threads import get_num_threads, set_num_threads  # noqa: F401
threads.tune_malloc()  # process-wide: glibc keeps freed memory for the next training step (see threads.py)
from .core import Function, Tensor, enable_grad, is_grad_enabled, no_grad  # noqa: F401
from . import functions as _functions  # noqa: F401  (binds Tensor methods)
from . import functional  # noqa: F401
from .functions import (abs, cat, chunk, clamp, clip, exp, flatten, log, matmul, maximum, mean,  # noqa: F401
                        minimum, permute, reshape, split, sqrt, squeeze, stack, sum, transpose,
                        unsqueeze, var, where)
from .functions import max, min  # noqa: F401
from .functions import channel_shuffle, log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401
from .creation import (arange, empty, empty_like, from_numpy, full, full_like, ones, ones_like,  # noqa: F401
                       rand, rand_like, randint, randn, randn_like, tensor, zeros, zeros_like)
from .gradcheck import GradcheckError, gradcheck  # noqa: F401
from . import data, nn, optim  # noqa: F401
from .summary import ModelSummary, summary  # noqa: F401
from .serialization import load, save  # noqa: F401

float32 = __import__("numpy").float32
float64 = __import__("numpy").float64
int64 = __import__("numpy").int64

__version__ = "0.1.0"
