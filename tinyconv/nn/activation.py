"""Activation modules: parameter-free wrappers of ``tinyconv.functions.activation`` with PyTorch's names,
arguments and ``repr``.  ``inplace=True`` is accepted (torchvision passes it) but the result is always a new
tensor: autograd here never overwrites an input."""
from .. import functions as F
from . import checks
from .module import Module


class _Activation(Module):
    """An elementwise function of floating-point input (an integer input is refused, naming the layer)."""

    def __call__(self, *args, **kwargs):
        if args:
            checks.floating_input(checks.Described(lambda: f"{type(self).__name__}({self.extra_repr()})"), args[0])
        return super().__call__(*args, **kwargs)


class _Inplace(_Activation):
    """An activation that accepts PyTorch's ``inplace`` flag."""

    fn = None

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return type(self).fn(input)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class ReLU(_Inplace):
    """``max(x, 0)``."""
    fn = F.relu


class ReLU6(_Inplace):
    """``min(max(x, 0), 6)``."""
    fn = F.relu6


class SiLU(_Inplace):
    """``x * sigmoid(x)`` (swish)."""
    fn = F.silu


class Hardswish(_Inplace):
    """``x * relu6(x + 3) / 6``."""
    fn = F.hardswish


class Hardsigmoid(_Inplace):
    """``relu6(x + 3) / 6``."""
    fn = F.hardsigmoid


class LeakyReLU(_Activation):
    """``x`` for ``x > 0``, ``negative_slope * x`` otherwise."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = checks.real(f"LeakyReLU({negative_slope!r})", "negative_slope", negative_slope)
        self.inplace = inplace

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Sigmoid(_Activation):
    """The logistic function, stable for large ``|x|``."""

    def forward(self, input):
        return F.sigmoid(input)


class Tanh(_Activation):
    """Hyperbolic tangent."""

    def forward(self, input):
        return F.tanh(input)


class GELU(_Activation):
    """``x * Phi(x)`` (``approximate='none'``) or its tanh approximation (``'tanh'``)."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Softplus(_Activation):
    """``log(1 + exp(beta x)) / beta``, linear above ``threshold``."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        where = f"Softplus(beta={beta!r}, threshold={threshold!r})"
        self.beta, self.threshold = checks.real(where, "beta", beta), checks.real(where, "threshold", threshold)
        if self.beta == 0:
            raise ValueError(f"{where}: beta must not be zero (softplus divides by it)")

    def forward(self, input):
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Softmax(_Activation):
    """Softmax along ``dim``."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = None if dim is None else checks.integer(f"{type(self).__name__}(dim={dim!r})", "dim", dim,
                                                           minimum=None)

    def _check_dim(self, input):
        if self.dim is not None and not -max(input.ndim, 1) <= self.dim < max(input.ndim, 1):
            raise ValueError(f"{type(self).__name__}(dim={self.dim}): dim is out of range for an input of "
                             f"{input.ndim} dimensions {tuple(input.shape)}")

    def forward(self, input):
        self._check_dim(input)
        return F.softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """Log-softmax along ``dim``."""

    def forward(self, input):
        self._check_dim(input)
        return F.log_softmax(input, self.dim)


class ELU(_Activation):
    """``functional.elu``: ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha, self.inplace = checks.real("ELU", "alpha", alpha), inplace

    def forward(self, input):
        return F.elu(input, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"
