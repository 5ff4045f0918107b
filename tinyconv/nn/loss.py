"""Loss modules: ``CrossEntropyLoss``, ``NLLLoss``, ``MSELoss``, ``MultiMarginLoss``, ``BCEWithLogitsLoss``.

Arguments, their order (including PyTorch's deprecated ``size_average``/``reduce``) and defaults as PyTorch;
class weights are registered as buffers named ``weight`` (and ``pos_weight``), so they follow ``.to(device)``.
"""
from .. import functions as F
from ..core import Tensor
from . import checks
from .module import Module


def _legacy_reduction(size_average, reduce, reduction):
    """PyTorch's mapping of the deprecated flags: ``reduce=False`` -> 'none', ``size_average=False`` -> 'sum'."""
    if size_average is None and reduce is None:
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.reduction = checks.choice(type(self).__name__, "reduction",
                                       _legacy_reduction(size_average, reduce, reduction), ("none", "mean", "sum"))

    def __call__(self, input, *args, **kwargs):
        checks.floating_input(checks.Described(lambda: f"{type(self).__name__}(reduction={self.reduction!r})"), input)
        return super().__call__(input, *args, **kwargs)


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight if weight is None or isinstance(weight, Tensor) else Tensor(weight))


class CrossEntropyLoss(_WeightedLoss):
    """Softmax cross-entropy on logits (``tinyconv.functional.cross_entropy``)."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = checks.integer("CrossEntropyLoss", "ignore_index", ignore_index, minimum=None)
        self.label_smoothing = checks.real("CrossEntropyLoss", "label_smoothing", label_smoothing, 0.0, 1.0)

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities (``tinyconv.functional.nll_loss``)."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = checks.integer("NLLLoss", "ignore_index", ignore_index, minimum=None)

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class MSELoss(_Loss):
    """Mean squared error."""

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class MultiMarginLoss(_WeightedLoss):
    """Multi-class hinge loss ``sum_{c != y} w_y max(0, margin - x_y + x_c)^p / C``."""

    def __init__(self, p=1, margin=1.0, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        if p not in (1, 2):
            raise ValueError(f"MultiMarginLoss: only p == 1 and p == 2 are supported, got {p}")
        self.p, self.margin = p, checks.real("MultiMarginLoss", "margin", margin)

    def forward(self, input, target):
        return F.multi_margin_loss(input, target, self.p, self.margin, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy, fused and stable (``tinyconv.functional.binary_cross_entropy_with_logits``)."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        wrap = lambda t: t if t is None or isinstance(t, Tensor) else Tensor(t)  # noqa: E731
        self.register_buffer("weight", wrap(weight))
        self.register_buffer("pos_weight", wrap(pos_weight))

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction, self.pos_weight)


class L1Loss(_Loss):
    """Mean absolute error (``tinyconv.functional.l1_loss``)."""

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """Quadratic below ``beta``, linear above (``tinyconv.functional.smooth_l1_loss``)."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy on probabilities (``tinyconv.functional.binary_cross_entropy``); prefer
    ``BCEWithLogitsLoss`` on logits."""

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)
