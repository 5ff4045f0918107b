"""Weight initialisation (``tinyconv.nn.init``), in place, with PyTorch's names and formulas.

For a weight of shape ``(out, in, KH, KW)`` (or ``(out, in)``), ``fan_in = in * KH * KW`` and
``fan_out = out * KH * KW``.

- Xavier/Glorot (Glorot & Bengio, 2010): keep the variance of activations and gradients equal across layers
  with linear/tanh units: ``Var(W) = gain^2 * 2 / (fan_in + fan_out)``.  Uniform: ``U(-a, a)`` with
  ``a = gain * sqrt(6 / (fan_in + fan_out))`` (lecture 003, "Инициализация сети": ``W ~ U[-sqrt(6)/sqrt(d_in +
  d_out), +sqrt(6)/sqrt(d_in + d_out)]``); normal: ``std = gain * sqrt(2 / (fan_in + fan_out))``.
- Kaiming/He (He et al., 2015): ReLU halves the variance, so ``Var(W) = gain^2 / fan`` with ``gain = sqrt(2)``
  for ReLU: normal ``std = gain / sqrt(fan)`` (the lecture's ``N(0, 2 / d_in)``), uniform bound
  ``gain * sqrt(3 / fan)``.

Values are drawn on the host from the generator seeded by ``tinyconv.manual_seed`` and then copied to the
tensor's device, so one seed gives the same weights on CPU and GPU.  Inside ``skip_init()`` every function
here leaves the tensor untouched: a large model can be built just to count its parameters.
"""
import contextlib
import contextvars
import math

import numpy as np

from .. import backend

_skipping = contextvars.ContextVar("tinyconv_skip_init", default=False)  # context-local, like grad mode


@contextlib.contextmanager
def skip_init():
    """Build modules without filling their weights (for counting parameters and propagating shapes).

    Scoped to this thread/context: a model built in another thread meanwhile is initialised as usual."""
    token = _skipping.set(True)
    try:
        yield
    finally:
        _skipping.reset(token)


def _skip():
    return _skipping.get()


def _fill(tensor, host_values):
    if _skip():
        return tensor
    xp = backend.get_array_module(tensor.data)
    tensor.data[...] = xp.asarray(host_values.astype(tensor.dtype, copy=False))  # drawn on the host, then copied
    return tensor


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (PyTorch's table)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dimensions, got shape {tensor.shape}")
    receptive = int(np.prod(tensor.shape[2:])) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _rng():
    return backend.host_rng()


def uniform_(tensor, a=0.0, b=1.0):
    """Fill with ``U(a, b)``."""
    if _skip():  # draw nothing: skip_init exists to make building large models cheap
        return tensor
    return _fill(tensor, _rng().uniform(a, b, tensor.shape))


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with ``N(mean, std^2)``."""
    if _skip():  # draw nothing: skip_init exists to make building large models cheap
        return tensor
    return _fill(tensor, _rng().normal(mean, std, tensor.shape))


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """Fill with ``N(mean, std^2)`` truncated to ``[a, b]`` (resampling the values outside)."""
    if _skip():
        return tensor
    v = _rng().normal(mean, std, tensor.shape)
    bad = (v < a) | (v > b)
    while bad.any():
        v[bad] = _rng().normal(mean, std, int(bad.sum()))
        bad = (v < a) | (v > b)
    return _fill(tensor, v)


def constant_(tensor, val):
    """Fill with ``val``."""
    if not _skip():
        tensor.data[...] = val
    return tensor


def zeros_(tensor):
    """Fill with 0."""
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill with 1."""
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0):
    """Glorot uniform: ``U(-a, a)``, ``a = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a)


def xavier_normal_(tensor, gain=1.0):
    """Glorot normal: ``N(0, std^2)``, ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """He uniform: ``U(-bound, bound)``, ``bound = gain * sqrt(3 / fan)``, gain from ``calculate_gain``.

    With ``a=sqrt(5)`` (PyTorch's default for ``Conv2d`` and ``Linear``) this is ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
    """
    gain = calculate_gain(nonlinearity, a)
    bound = gain * math.sqrt(3.0 / _fan(tensor, mode))
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """He normal: ``N(0, std^2)``, ``std = gain / sqrt(fan)``; ``nonlinearity='relu'`` gives ``sqrt(2 / fan)``."""
    gain = calculate_gain(nonlinearity, a)
    return normal_(tensor, 0.0, gain / math.sqrt(_fan(tensor, mode)))
