"""``norm_activation(norm, act, x)``: ``act(norm(x))``, batch norm and its ReLU in one pass where nothing can tell.

In evaluation mode batch norm is an affine map per channel, ``y = (x - mean) k + beta``, and ReLU and ReLU6 are
clamps: one kernel (``batch_norm_eval`` with its ``activation``) computes both, reading and writing every value
once instead of twice, and one op's Python is saved.  The result has the two modules' bits.  Measured on
mobilenet_v2's batch-1 inference (224x224), ReLU6 took 1.5 of 24 ms and each op's Python about 12 us.

The zoo's blocks (``ConvNormActivation``, ResNet's blocks and stem, ``BasicConv2d``) call it where they would
write ``act(norm(x))``.  It falls back to exactly that whenever the two could behave differently from the fused
op: a module in training mode or without running statistics, a graph being recorded (grad mode on and x or
the affine parameters requiring a gradient: ReLU then gets its own node, as written), a forward hook or
pre-hook on either module (``viz``'s activation recording sees each output), or other module types
(subclasses included: they may override ``forward``).
"""
from ..core import Tensor, is_grad_enabled
from ..functions.normalization import batch_norm_activation
from .activation import ReLU, ReLU6
from .module import Module
from .normalization import BatchNorm2d

FUSED = {ReLU: "relu", ReLU6: "relu6"}  # activation module type -> batch_norm_eval's activation


def _hooked(m):
    return bool(m.__dict__.get("_forward_hooks") or m.__dict__.get("_forward_pre_hooks"))


def fusable(norm, act, x):
    """Whether ``act(norm(x))`` may run as one ``batch_norm_activation``: see the module docstring."""
    if type(norm) is not BatchNorm2d or type(act) not in FUSED or not isinstance(x, Tensor):
        return False
    if norm.training or norm.running_mean is None or _hooked(norm) or _hooked(act):
        return False
    return not (is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, norm.weight, norm.bias)))


def norm_activation(norm, act, x):
    """``act(norm(x))``, fused into one pass when ``fusable`` (evaluation, nothing recorded, no hooks)."""
    if not isinstance(norm, Module) or not isinstance(act, Module):
        raise TypeError(f"norm_activation: expected two modules, got {type(norm).__name__} and "
                        f"{type(act).__name__}")
    if not fusable(norm, act, x):
        return act(norm(x))
    norm._check_input(x)  # the module's own checks and messages
    return batch_norm_activation(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, norm.eps,
                                 FUSED[type(act)])
