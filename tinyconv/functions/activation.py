"""Elementwise activations and the softmax family, each a ``Function`` with its hand-written derivative.

Conventions follow PyTorch, including the one-sided derivatives at kinks: ``relu'(0) = 0``,
``relu6'(0) = relu6'(6) = 0``, ``leaky_relu'(0) = negative_slope``, ``hardsigmoid'(+-3) = 0``,
``hardswish'(-3) = 0``, ``hardswish'(3) = 1``.

Numerical stability: the logistic function is evaluated through ``exp(-|x|)``, which never overflows;
softplus switches to the identity above ``threshold`` and uses ``log1p(exp(-|bx|)) + max(bx, 0)`` below;
softmax and log-softmax subtract the row maximum first (``softmax(x) = softmax(x - max x)``).
"""
import math

from .. import backend
from ..backend import get_array_module
from ..core import Function


def _sigmoid(x):
    """The logistic function on an array, without overflow: with ``e = exp(-|x|)`` in (0, 1],
    ``sigma(x) = 1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` for ``x < 0`` (kernels/activation.py)."""
    return backend.get_kernel("sigmoid", x)(x)


def _erf(x):
    """The error function on an array (a kernel: NumPy reference, Numba, numba.cuda)."""
    return backend.get_kernel("erf", x)(x)


class ReLU(Function):
    """Saves its output (which the next layer keeps anyway), not a mask: x > 0 exactly where y > 0."""

    def forward(self, x):
        self.y = backend.get_kernel("relu", x)(x)  # max(x, 0)
        return self.y

    def backward(self, gy):
        # relu'(x) = 1 for x > 0, else 0 (0 at x = 0): gy * [y > 0], one pass on the CPU (kernels/activation.py)
        return backend.get_kernel("relu_backward", gy)(gy, self.y)


def relu(input, inplace=False):
    """``max(x, 0)``.  ``inplace`` is accepted for PyTorch compatibility; the result is always a new tensor."""
    return ReLU.apply(input)


class ReLU6(Function):
    """Saves its output, not a mask: 0 < x < 6 exactly where 0 < y < 6."""

    def forward(self, x):
        self.y = backend.get_kernel("relu6", x)(x)  # min(max(x, 0), 6)
        return self.y

    def backward(self, gy):
        # relu6'(x) = 1 on the open interval (0, 6), else 0: gy * [0 < y < 6]
        return backend.get_kernel("relu6_backward", gy)(gy, self.y)


def relu6(input, inplace=False):
    """``min(max(x, 0), 6)`` (MobileNet)."""
    return ReLU6.apply(input)


class LeakyReLU(Function):
    def forward(self, x):
        self.slope = get_array_module(x).where(x > 0, x.dtype.type(1), x.dtype.type(self.negative_slope))
        return x * self.slope

    def backward(self, gy):
        # d/dx = 1 for x > 0, negative_slope for x <= 0
        return gy * self.slope


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """``x`` for ``x > 0``, ``negative_slope * x`` otherwise (Maas et al., 2013)."""
    return LeakyReLU.apply(input, negative_slope=negative_slope)


class Sigmoid(Function):
    def forward(self, x):
        self.y = _sigmoid(x)
        return self.y

    def backward(self, gy):
        # sigma' = sigma (1 - sigma), one pass on the CPU
        return backend.get_kernel("sigmoid_backward", gy)(gy, self.y)


def sigmoid(input):
    """The logistic function ``1 / (1 + exp(-x))``, evaluated without overflow for any ``x``."""
    return Sigmoid.apply(input)


class Tanh(Function):
    """The ``tanh`` kernels (``kernels/special.py``: a vectorised, correctly rounded float32 tanh and a one-pass
    derivative on the CPU; CuPy's own tanh on a GPU, through the reference)."""

    def forward(self, x):
        self.y = backend.get_kernel("tanh", x)(x)
        return self.y

    def backward(self, gy):
        # tanh' = 1 - tanh^2
        return backend.get_kernel("tanh_backward", gy)(gy, self.y)


def tanh(input):
    """Hyperbolic tangent."""
    return Tanh.apply(input)


class SiLU(Function):
    """y = x sigma(x); only x is saved, sigma is recomputed in backward (kernels/activation.py: one pass each
    way on the CPU)."""

    def forward(self, x):
        self.x = x
        return backend.get_kernel("silu_forward", x)(x)

    def backward(self, gy):
        # d(x sigma(x)) = sigma + x sigma (1 - sigma) = sigma (1 + x (1 - sigma))
        return backend.get_kernel("silu_backward", gy)(gy, self.x)


def silu(input, inplace=False):
    """SiLU / swish: ``x * sigmoid(x)`` (Ramachandran et al., 2017; EfficientNet)."""
    return SiLU.apply(input)

swish = silu


class Hardswish(Function):
    def forward(self, x):
        self.x = x
        return x * get_array_module(x).clip(x + 3, 0, 6).astype(x.dtype, copy=False) / 6

    def backward(self, gy):
        xp = get_array_module(gy)
        x = self.x
        # d(x relu6(x+3)/6) = 0 for x <= -3, x/3 + 1/2 for -3 < x < 3, 1 for x >= 3
        slope = xp.where(x <= -3, 0, xp.where(x < 3, x / 3 + 0.5, 1)).astype(gy.dtype, copy=False)
        return gy * slope


def hardswish(input, inplace=False):
    """``x * relu6(x + 3) / 6`` (MobileNetV3)."""
    return Hardswish.apply(input)


class Hardsigmoid(Function):
    def forward(self, x):
        self.inside = (x > -3) & (x < 3)
        return get_array_module(x).clip(x + 3, 0, 6).astype(x.dtype, copy=False) / 6

    def backward(self, gy):
        # d(relu6(x+3)/6) = 1/6 on the open interval (-3, 3), else 0
        return gy * self.inside / 6


def hardsigmoid(input, inplace=False):
    """``relu6(x + 3) / 6`` (MobileNetV3's squeeze-excitation gate)."""
    return Hardsigmoid.apply(input)


class GELU(Function):
    """``approximate='none'``: ``x Phi(x)`` with ``Phi(x) = (1 + erf(x/sqrt 2))/2``;
    ``'tanh'``: ``x/2 (1 + tanh(u))`` with ``u = sqrt(2/pi) (x + 0.044715 x^3)`` (Hendrycks & Gimpel, 2016)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        if self.approximate == "tanh":
            u = x.dtype.type(math.sqrt(2 / math.pi)) * (x + x.dtype.type(0.044715) * x ** 3)
            self.t = xp.tanh(u)
            return 0.5 * x * (1 + self.t)
        # y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2 saved for backward (kernels/activation.py)
        y, self.cdf = backend.get_kernel("gelu_forward", x)(x)
        return y

    def backward(self, gy):
        x = self.x
        if self.approximate == "tanh":
            k = x.dtype.type(math.sqrt(2 / math.pi))
            du = k * (1 + x.dtype.type(3 * 0.044715) * x * x)
            # d = (1 + t)/2 + x/2 (1 - t^2) u'
            return gy * (0.5 * (1 + self.t) + 0.5 * x * (1 - self.t * self.t) * du)
        # d(x Phi(x)) = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
        return backend.get_kernel("gelu_backward", gy)(gy, x, self.cdf)


def gelu(input, approximate="none"):
    """Gaussian error linear unit ``x * Phi(x)``; ``approximate='tanh'`` for the tanh approximation."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU.apply(input, approximate=approximate)


class Softplus(Function):
    def forward(self, x):
        xp = get_array_module(x)
        bx = x * x.dtype.type(self.beta)
        self.linear = bx > self.threshold
        self.bx = bx
        soft = (xp.log1p(xp.exp(-abs(bx))) + xp.maximum(bx, 0)) / x.dtype.type(self.beta)
        return xp.where(self.linear, x, soft).astype(x.dtype, copy=False)

    def backward(self, gy):
        # d(log(1 + e^(bx))/b) = sigma(bx); 1 where the identity is used (bx > threshold)
        return gy * get_array_module(gy).where(self.linear, gy.dtype.type(1), _sigmoid(self.bx))


def softplus(input, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta x)) / beta``, and ``x`` itself where ``beta x > threshold`` (as PyTorch)."""
    return Softplus.apply(input, beta=beta, threshold=threshold)


def _softmax_dim(name, ndim, dim):
    if dim is None:  # PyTorch's legacy implicit choice
        dim = 0 if ndim in (0, 1, 3) else 1
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise ValueError(f"{name}: dim {dim} is out of range for a tensor of {ndim} dimensions")
    return dim % max(ndim, 1)


class Softmax(Function):
    def forward(self, x):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        self.y = e / e.sum(axis=self.axis, keepdims=True)
        return self.y

    def backward(self, gy):
        # dx_i = y_i (g_i - sum_j g_j y_j)   (Jacobian diag(y) - y y^T applied to g)
        return self.y * (gy - (gy * self.y).sum(axis=self.axis, keepdims=True))


def softmax(input, dim=None, dtype=None):
    """``exp(x_i) / sum_j exp(x_j)`` along ``dim`` (the maximum is subtracted first, so it never overflows)."""
    if dtype is not None:
        input = input.astype(dtype)
    return Softmax.apply(input, axis=_softmax_dim("softmax", input.ndim, dim))


class LogSoftmax(Function):
    def forward(self, x):
        xp = get_array_module(x)
        z = x - x.max(axis=self.axis, keepdims=True)
        self.y = z - xp.log(xp.exp(z).sum(axis=self.axis, keepdims=True))
        return self.y

    def backward(self, gy):
        # y = x - logsumexp(x):  dx_i = g_i - softmax(x)_i sum_j g_j
        return gy - get_array_module(gy).exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


def log_softmax(input, dim=None, dtype=None):
    """``x_i - log sum_j exp(x_j)`` along ``dim``, computed as ``z - log sum exp z`` with ``z = x - max x``."""
    if dtype is not None:
        input = input.astype(dtype)
    return LogSoftmax.apply(input, axis=_softmax_dim("log_softmax", input.ndim, dim))
