"""Argument and input checks shared by the layers: every refusal is a ``ValueError`` or ``TypeError`` whose
message names the layer, the argument and the value it got.

The dtype policy (PyTorch's): a layer that computes takes floating-point input only (float32 or float64:
the kernels have no float16 versions).  A layer with
parameters (``Conv2d``, ``Linear``, ``BatchNorm*``, ``LayerNorm*``) computes in its parameters' dtype, and
an input of another dtype is refused rather than silently cast or promoted (``model.double()`` or
``x.float()`` say which precision is meant).  Layers that only move values around (``Identity``,
``Flatten``, ``Unflatten``, ``ZeroPad2d``, ``ChannelShuffle``) take any dtype, as in PyTorch.
"""
import math
import numbers

import numpy as np


class Described:
    """A layer's name for error messages, built only when one is raised: ``f"{Described(describe)}: ..."``
    calls ``describe()`` then.  A layer's ``forward`` runs every step, and most never raise."""
    __slots__ = ("describe",)

    def __init__(self, describe):
        self.describe = describe

    def __str__(self):
        return self.describe()

    def __format__(self, spec):
        return format(self.describe(), spec)


def _is_int(value):
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))


def integer(layer, name, value, minimum=1):
    """``value`` as an ``int`` >= ``minimum`` (``None``: any); floats (``1.9``), bools and strings are refused,
    not truncated."""
    if not _is_int(value):
        raise TypeError(f"{layer}: {name} must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{layer}: {name} must be {'positive' if minimum == 1 else f'>= {minimum}'}, "
                         f"got {name}={value!r}")
    return int(value)


def pair(layer, name, value, minimum=1):
    """An int or a pair of ints, each >= ``minimum``, as a pair of ``int``."""
    values = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(values) != 2:
        raise ValueError(f"{layer}: {name} must be an integer or a pair of integers, got {value!r}")
    if not all(_is_int(v) for v in values):
        raise TypeError(f"{layer}: {name} must be an integer or a pair of integers, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{layer}: {name} must be {'positive' if minimum == 1 else f'>= {minimum}'}, "
                         f"got {name}={value!r}")
    return tuple(int(v) for v in values)


def real(layer, name, value, low=-math.inf, high=math.inf, low_open=False, high_open=False, optional=False):
    """A finite real number in ``[low, high]`` (``(low, ...`` / ``..., high)`` when open), returned as given
    (so ``repr`` shows ``p=1`` as PyTorch does); ``None`` passes when ``optional``."""
    if value is None and optional:
        return None
    if not _is_real(value):
        raise TypeError(f"{layer}: {name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if math.isnan(v) or math.isinf(v) or below or above:
        bounds = [f"{'>' if low_open else '>='} {low:g}"] if low > -math.inf else []
        bounds += [f"{'<' if high_open else '<='} {high:g}"] if high < math.inf else []
        span = (f"between {low:g} and {high:g}" if not (low_open or high_open) and len(bounds) == 2
                else " and ".join(bounds))
        raise ValueError(f"{layer}: {name} must be a finite number{' ' + span if span else ''}, "
                         f"got {name}={value!r}")
    return value


def choice(layer, name, value, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{layer}: {name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def parameter_dtype(layer, dtype):
    """Refuse a non-floating ``dtype=`` for a layer's parameters (``None``: the default float32)."""
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise TypeError(f"{layer}: dtype must be a floating-point type, got {np.dtype(dtype)}")


def floating_input(layer, input, dtype=None):
    """Refuse input that is not floating point, or (``dtype`` given: the parameters') not of ``dtype``."""
    got = getattr(input, "dtype", None)
    if got is None:
        raise TypeError(f"{layer}: expected a Tensor, got {type(input).__name__}")
    got = np.dtype(got)
    if dtype is not None and got != np.dtype(dtype):
        raise TypeError(f"{layer}: expected input of dtype {np.dtype(dtype)} (the parameters' dtype), got "
                        f"{got}; convert one of them: x.to(dtype=...) or layer.to(dtype=...)")
    if got.kind != "f":
        raise TypeError(f"{layer}: expected a floating-point input, got dtype {got}")
    if got.itemsize < 4:
        raise TypeError(f"{layer}: float16 input is not supported (the CPU kernels compute in float32 or float64), "
                        f"got dtype {got}; convert it with x.to(dtype=tinyconv.float32)")
