"""RMSprop: divide the gradient by a running RMS of recent gradients."""
from .. import backend
from .optimizer import Optimizer, blockwise, l2_gradient


class RMSprop(Optimizer):
    r"""RMSprop (Tieleman & Hinton, 2012, Coursera lecture 6.5; centred variant from Graves, 2013).

    Like AdaDelta (lecture 003, slide "Развитие SGD") it keeps an exponential average of squared gradients
    instead of AdaGrad's growing sum.  PyTorch's update, reproduced exactly::

        g    = grad + weight_decay * p
        v   <- alpha * v + (1 - alpha) * g^2
        m   <- alpha * m + (1 - alpha) * g                  (centered only)
        den  = sqrt(v - m^2) + eps  if centered  else  sqrt(v) + eps
        b   <- momentum * b + g / den,  p <- p - lr * b     (momentum > 0)
        p   <- p - lr * g / den                             (otherwise)

    State per parameter: ``step`` (int), ``square_avg`` (v), ``momentum_buffer`` (b, when momentum > 0),
    ``grad_avg`` (m, when centered).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 maximize=False):
        for name, v in (("learning rate", lr), ("epsilon", eps), ("momentum", momentum),
                        ("weight_decay", weight_decay), ("alpha", alpha)):
            if v < 0.0:
                raise ValueError(f"RMSprop: invalid {name} {v}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _update(self, p, grad, state, group):
        xp = backend.get_array_module(p.data)
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
            if group["momentum"] > 0:
                state["momentum_buffer"] = xp.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(p.data)
        state["step"] += 1
        blockwise(lambda *blocks: _rmsprop(*blocks, **group), p.data, grad, state["square_avg"],
                  state.get("momentum_buffer"), state.get("grad_avg"))


def _rmsprop(p, grad, square_avg, buf, grad_avg, lr, alpha, eps, weight_decay, momentum, centered, maximize, **_):
    """One step on (blocks of) the arrays, in place; ``buf`` / ``grad_avg`` are None when unused."""
    xp = backend.get_array_module(p)
    g = l2_gradient(p, grad, weight_decay, maximize)
    square_avg *= alpha
    square_avg += (1 - alpha) * g * g
    if centered:
        grad_avg += (1 - alpha) * (g - grad_avg)
        avg = xp.sqrt(square_avg - grad_avg * grad_avg)
    else:
        avg = xp.sqrt(square_avg)
    avg += eps
    if momentum > 0:
        buf *= momentum
        buf += g / avg
        p -= lr * buf
    else:
        p -= lr * (g / avg)
