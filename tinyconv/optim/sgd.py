"""Stochastic gradient descent with momentum (Polyak's heavy ball) and Nesterov momentum."""
from .. import backend
from .optimizer import Optimizer


class SGD(Optimizer):
    r"""SGD: ``p <- p - lr * d``, where ``d`` is the gradient or a momentum-averaged direction.

    Lecture 003 gives the plain step ``w := w - h * grad L_i(w)`` ("SG: стохастический градиентный спуск",
    Robbins & Monro, 1951) and its minibatch form ``theta <- theta - eta_k * g_hat`` with ``g_hat`` the gradient
    of the loss averaged over the minibatch (the loss's ``reduction='mean'``); its slide "Развитие SGD" lists
    momentum (Polyak, 1964) and Nesterov momentum, which keep a running average of past gradients.
    PyTorch's update, reproduced here exactly::

        g_t = grad_t + weight_decay * p_{t-1}                           (L2 penalty folded into the gradient)
        b_1 = g_1,   b_t = momentum * b_{t-1} + (1 - dampening) * g_t   (only when momentum != 0)
        d_t = g_t + momentum * b_t   if nesterov   else   b_t           (d_t = g_t without momentum)
        p_t = p_{t-1} - lr * d_t

    This is the form of Sutskever et al. (2013) with the learning rate outside the buffer: for a constant
    ``lr`` and ``dampening=0`` it follows the same trajectory as the textbook ``v <- mu v - lr g; p <- p + v``; Nesterov's look-ahead
    gradient is approximated by ``g_t + momentum * b_t``.  ``maximize=True`` ascends instead.

    State per parameter: ``momentum_buffer`` (when ``momentum != 0``).
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        if lr < 0.0:
            raise ValueError(f"SGD: invalid learning rate {lr}")
        if momentum < 0.0:
            raise ValueError(f"SGD: invalid momentum {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"SGD: invalid weight_decay {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _update(self, p, grad, state, group):
        buf, first = None, False
        if group["momentum"] != 0:
            buf = state.get("momentum_buffer")
            if buf is None:  # b_1 = g_1, written by the first step
                buf = state["momentum_buffer"] = backend.get_array_module(p.data).zeros_like(p.data)
                first = True
        # the class docstring's update, in place on p and buf (kernels/optim.py: its NumPy reference is those
        # lines as written; the Numba and CUDA kernels do them in one pass over the arrays)
        backend.get_kernel("sgd_step", p.data)(p.data, grad, buf, group["lr"], group["momentum"],
                                               group["dampening"], group["weight_decay"], group["nesterov"],
                                               group["maximize"], first)
