"""Adam and AdamW: momentum plus RMSprop-style scaling, with bias correction."""
from .. import backend
from .optimizer import Optimizer, blockwise


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015; lecture 003, slide "Развитие SGD"), with AMSGrad (Reddi et al., 2018).

    An exponential average of gradients (momentum) divided by the root of an exponential average of squared
    gradients (RMSprop), both corrected for their start at zero.  PyTorch's update, reproduced exactly::

        t  <- t + 1
        g   = grad + weight_decay * p                   (Adam: L2 penalty in the gradient)
        p  <- p * (1 - lr * weight_decay)               (AdamW instead: decoupled decay, g = grad)
        m  <- beta1 * m + (1 - beta1) * g
        v  <- beta2 * v + (1 - beta2) * g^2
        v_max <- max(v_max, v)                          (amsgrad; then v_max replaces v below)
        p  <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    State per parameter: ``step`` (int), ``exp_avg`` (m), ``exp_avg_sq`` (v), ``max_exp_avg_sq`` (amsgrad).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        if lr < 0.0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {lr}")
        if eps < 0.0:
            raise ValueError(f"{type(self).__name__}: invalid epsilon {eps}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{type(self).__name__}: invalid beta parameter at index {i}: {beta}")
        if weight_decay < 0.0:
            raise ValueError(f"{type(self).__name__}: invalid weight_decay {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _update(self, p, grad, state, group):
        xp = backend.get_array_module(p.data)
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        blockwise(lambda *blocks: _adam(*blocks, state["step"], **group), p.data, grad, state["exp_avg"],
                  state["exp_avg_sq"], state.get("max_exp_avg_sq"))


def _adam(p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, t, lr, betas, eps, weight_decay, amsgrad, maximize,
          decoupled_weight_decay, **_):
    """Step ``t`` on (blocks of) the arrays, in place; ``max_exp_avg_sq`` is None without AMSGrad."""
    xp = backend.get_array_module(p)
    beta1, beta2 = betas
    g = -grad if maximize else grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
    exp_avg += (1 - beta1) * (g - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    if amsgrad:
        xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        exp_avg_sq = max_exp_avg_sq
    step_size = lr / (1 - beta1 ** t)
    denom = xp.sqrt(exp_avg_sq) / (1 - beta2 ** t) ** 0.5 + eps
    p -= step_size * (exp_avg / denom)


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with weight decay decoupled from the gradient.

    ``p <- p * (1 - lr * weight_decay)`` before the Adam step, instead of adding ``weight_decay * p`` to the
    gradient (where Adam's scaling would shrink the decay of weights with large gradients).  See ``Adam``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
