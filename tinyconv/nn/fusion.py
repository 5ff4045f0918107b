"""Fused inference paths of the zoo's blocks, taken only where nothing can tell them from the modules they stand
for; otherwise those modules run as written.

``norm_activation(norm, act, x)`` is ``act(norm(x))``.  In evaluation mode batch norm is an affine map per channel,
``y = (x - mean) k + beta``, and ReLU and ReLU6 are clamps: one kernel (``batch_norm_eval`` with its
``activation``) computes both, reading and writing every value once instead of twice, and one op's Python is
saved.  Measured on mobilenet_v2's batch-1 inference (224x224), ReLU6 took 1.5 of 24 ms and each op's Python
about 12 us.

``conv_norm_activation(conv, norm, act, x)`` is ``act(norm(conv(x)))`` (``act`` may be None): the convolution
normalises each chunk of its output as soon as it is computed, while it is in cache (``F.conv2d_batch_norm``),
with the activation when it is ReLU or ReLU6; another activation module is then called on the result.
Measured on batch-1 inference at 224x224, batch norm as a separate op (its pass and its Python) took about
5 of mobilenet_v2's 25 ms.

Both give the modules' bits, and fall back to the modules whenever they could behave differently: a batch norm
in training mode or without running statistics, a graph being recorded (grad mode on and x or a parameter
requiring a gradient: each op then gets its own node, as written), a forward hook or pre-hook on a fused module
(``viz``'s activation recording sees each output) or a ``forward`` set on its instance (``tinyconv.summary``'s
counting), or other module types (subclasses included: they may override ``forward``).
"""
from ..core import Tensor, is_grad_enabled
from ..functions.conv import conv2d_batch_norm
from ..functions.normalization import batch_norm_activation
from .activation import ReLU, ReLU6
from .conv import Conv2d
from .module import Module
from .normalization import BatchNorm2d

FUSED = {ReLU: "relu", ReLU6: "relu6"}  # activation module type -> batch_norm_eval's activation


def _hooked(m):
    """Whether something watches or replaces the module's forward: a hook, or a ``forward`` set on the instance
    (``tinyconv.summary`` counts each module's work that way)."""
    d = m.__dict__
    return bool(d.get("_forward_hooks") or d.get("_forward_pre_hooks") or "forward" in d)


def _recorded(*tensors):
    """Whether an op on these tensors would record a graph."""
    return is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _evaluating(norm):
    """Whether ``norm`` is a plain BatchNorm2d in evaluation mode with running statistics, without hooks."""
    return type(norm) is BatchNorm2d and not norm.training and norm.running_mean is not None and not _hooked(norm)


def fusable(norm, act, x):
    """Whether ``act(norm(x))`` may run as one ``batch_norm_activation``: see the module docstring."""
    if type(act) not in FUSED or not isinstance(x, Tensor) or not _evaluating(norm) or _hooked(act):
        return False
    return not _recorded(x, norm.weight, norm.bias)


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


def conv_fusable(conv, norm, x):
    """Whether ``norm(conv(x))`` may run as one ``conv2d_batch_norm``: see the module docstring."""
    if type(conv) is not Conv2d or _hooked(conv) or not _evaluating(norm) or not isinstance(x, Tensor):
        return False
    param = norm.weight if norm.weight is not None else norm.running_mean  # what sets batch norm's dtype
    if x.ndim != 4 or conv.out_channels != norm.num_features or conv.weight.dtype != param.dtype:
        return False  # the modules' own messages, or PyTorch's unbatched input, by the modules
    return not _recorded(x, conv.weight, conv.bias, norm.weight, norm.bias)


def conv_norm_activation(conv, norm, act, x):
    """``act(norm(conv(x)))`` (``norm(conv(x))`` when ``act`` is None), fused into the convolution when
    ``conv_fusable``, with the activation when it is an unhooked ReLU or ReLU6."""
    if not all(isinstance(m, Module) for m in (conv, norm)) or not (act is None or isinstance(act, Module)):
        raise TypeError(f"conv_norm_activation: expected two modules and a module or None, got "
                        f"{type(conv).__name__}, {type(norm).__name__} and {type(act).__name__}")
    if not conv_fusable(conv, norm, x):
        y = conv(x)
        return norm(y) if act is None else norm_activation(norm, act, y)
    where = conv._check_input(x)  # the module's own checks and messages
    fused = type(act) in FUSED and not _hooked(act)
    y = conv2d_batch_norm(x, conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                          conv.stride, conv.padding, conv.dilation, conv.groups, norm.eps,
                          FUSED[type(act)] if fused else None, where=where)
    return y if act is None or fused else act(y)
