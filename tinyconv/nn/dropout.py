"""Dropout modules: active in training mode, the identity after ``.eval()``."""
from .. import functions as F
from . import checks
from .module import Module


class _DropoutNd(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        self.p = checks.real(f"{type(self).__name__}(p={p!r})", "p", p, 0.0, 1.0)
        self.inplace = inplace

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Inverted dropout: zero each element with probability ``p``, scale the rest by ``1/(1-p)``."""

    def forward(self, input):
        checks.floating_input(checks.Described(lambda: f"{type(self).__name__}(p={self.p})"), input)
        return F.dropout(input, self.p, self.training)


class Dropout2d(_DropoutNd):
    """Zero whole channels of ``(N, C, H, W)`` with probability ``p``, scale the rest by ``1/(1-p)``."""

    def forward(self, input):
        checks.floating_input(checks.Described(lambda: f"{type(self).__name__}(p={self.p})"), input)
        if input.ndim not in (3, 4):
            raise ValueError(f"{type(self).__name__}(p={self.p}): expected input of shape (N, C, H, W) or "
                             f"(C, H, W), got {tuple(input.shape)}")
        return F.dropout2d(input, self.p, self.training)


class StochasticDepth(Module):
    """torchvision's stochastic depth on a residual branch: drop it per sample (``mode='row'``) or for the
    whole batch (``'batch'``) with probability ``p``, scaling kept samples by ``1/(1-p)``."""

    def __init__(self, p, mode="row"):
        super().__init__()
        p = checks.real(f"{type(self).__name__}(p={p!r})", "p", p, 0.0, 1.0)
        if mode not in ("row", "batch"):
            raise ValueError(f"{type(self).__name__}: mode has to be either 'batch' or 'row', but got {mode!r}")
        self.p, self.mode = p, mode

    def forward(self, input):
        checks.floating_input(checks.Described(lambda: f"{type(self).__name__}(p={self.p})"), input)
        return F.stochastic_depth(input, self.p, self.mode, self.training)

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p}, mode={self.mode})"


class DropPath(StochasticDepth):
    """Per-sample stochastic depth (timm's name): ``DropPath(p) == StochasticDepth(p, 'row')``;
    timm's keyword ``drop_prob`` is accepted for ``p``."""

    def __init__(self, p=0.0, drop_prob=None):
        super().__init__(p if drop_prob is None else drop_prob, "row")

    drop_prob = property(lambda self: self.p)

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p})"
