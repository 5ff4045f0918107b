"""AdaGrad: per-coordinate learning rates shrinking with the accumulated squared gradient."""
from .. import backend
from .optimizer import Optimizer, blockwise, l2_gradient


class Adagrad(Optimizer):
    r"""AdaGrad (Duchi, Hazan & Singer, 2011; lecture 003, slide "Развитие SGD": adaptive learning rate).

    Each coordinate is divided by the root of the sum of its past squared gradients, so rarely-updated
    weights keep large steps and often-updated ones slow down.  PyTorch's update, reproduced exactly::

        t   <- t + 1
        g   = grad + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s   <- s + g * g                       (s starts at initial_accumulator_value)
        p   <- p - clr * g / (sqrt(s) + eps)

    State per parameter: ``step`` (int), ``sum``.
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, *,
                 maximize=False):
        for name, v in (("learning rate", lr), ("lr_decay", lr_decay), ("weight_decay", weight_decay),
                        ("initial_accumulator_value", initial_accumulator_value), ("epsilon", eps)):
            if v < 0.0:
                raise ValueError(f"Adagrad: invalid {name} {v}")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize))

    def _update(self, p, grad, state, group):
        xp = backend.get_array_module(p.data)
        if not state:
            state["step"] = 0
            state["sum"] = xp.full_like(p.data, group["initial_accumulator_value"])
        state["step"] += 1
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        blockwise(lambda *blocks: _adagrad(*blocks, clr, **group), p.data, grad, state["sum"])


def _adagrad(p, grad, sum_, clr, weight_decay, eps, maximize, **_):
    """One step with learning rate ``clr`` on (blocks of) the arrays, in place."""
    xp = backend.get_array_module(p)
    g = l2_gradient(p, grad, weight_decay, maximize)
    sum_ += g * g
    std = xp.sqrt(sum_) + eps
    p -= clr * (g / std)
