"""AdaDelta: AdaGrad's idea with decaying averages and units matched by a running average of updates."""
from .. import backend
from .optimizer import Optimizer, blockwise, l2_gradient


class Adadelta(Optimizer):
    r"""AdaDelta (Zeiler, 2012; lecture 003, slide "Развитие SGD").

    AdaGrad's sum of squared gradients grows forever; AdaDelta replaces it with an exponential average and
    scales the step by the RMS of past updates, so the update has the units of the parameter and needs no
    learning rate (``lr=1.0`` is Zeiler's method).  PyTorch's update, reproduced exactly::

        g   = grad + weight_decay * p
        E[g^2]  <- rho * E[g^2] + (1 - rho) * g^2
        dx      = sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g
        E[dx^2] <- rho * E[dx^2] + (1 - rho) * dx^2
        p   <- p - lr * dx

    State per parameter: ``step`` (int), ``square_avg`` (E[g^2]), ``acc_delta`` (E[dx^2]).
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, maximize=False):
        if lr < 0.0:
            raise ValueError(f"Adadelta: invalid learning rate {lr}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Adadelta: invalid rho {rho}")
        if eps < 0.0:
            raise ValueError(f"Adadelta: invalid epsilon {eps}")
        if weight_decay < 0.0:
            raise ValueError(f"Adadelta: invalid weight_decay {weight_decay}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))

    def _update(self, p, grad, state, group):
        xp = backend.get_array_module(p.data)
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
            state["acc_delta"] = xp.zeros_like(p.data)
        state["step"] += 1
        blockwise(lambda *blocks: _adadelta(*blocks, **group), p.data, grad, state["square_avg"],
                  state["acc_delta"])


def _adadelta(p, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize, **_):
    """One step on (blocks of) the arrays, in place."""
    xp = backend.get_array_module(p)
    g = l2_gradient(p, grad, weight_decay, maximize)
    square_avg *= rho
    square_avg += (1 - rho) * g * g
    delta = xp.sqrt(acc_delta + eps) / xp.sqrt(square_avg + eps) * g
    acc_delta *= rho
    acc_delta += (1 - rho) * delta * delta
    p -= lr * delta
