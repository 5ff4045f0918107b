"""In-place tensor methods (``x.fill_(v)``, ``x.copy_(src)``, ``x.add_(y)``, ...), PyTorch's trailing-underscore idiom.

Every one is a write ``x[...] = value`` through ``setitem``, so it follows the engine's in-place rules (README,
"In-place writes"): x's version counter is bumped, so a backward through a function that saved x's old data
raises; a leaf that requires grad is refused outside ``no_grad()``; when x or the value requires grad the
write is recorded and x takes the new history.  ``x.add_(y)`` computes ``x + y`` first: on a recorded
tensor from a copy of x, so the function that computes it does not save the array it is about to overwrite.
"""
from .. import backend
from ..core import Tensor, is_grad_enabled
from . import activation, basic
from .indexing import masked_fill
from .shape import clone, setitem


def fill_(x, value):
    """Fill x with ``value`` (a number or a 0-d tensor, which then receives the gradient); returns x."""
    setitem(x, Ellipsis, value)
    return x


def copy_(x, src):
    """Copy ``src`` (broadcastable to x; cast to x's dtype) into x; differentiable in src; returns x."""
    if isinstance(src, Tensor) and src.device != x.device:
        src = src.to(x.device)
    setitem(x, Ellipsis, src)
    return x


def _updating(op):
    def method(x, *args, **kwargs):
        recorded = is_grad_enabled() and (x.requires_grad or any(getattr(a, "requires_grad", False)
                                                                  for a in (*args, *kwargs.values())))
        setitem(x, Ellipsis, op(clone(x) if recorded else x.detach(), *args, **kwargs))
        return x
    method.__name__ = op.__name__ + "_"
    method.__doc__ = f"In place: ``x = {op.__name__}(x, ...)`` written into x's array; returns x."
    return method


def _add(x, other, alpha=1):
    return basic.add(x, other if alpha == 1 else other * alpha)


def _sub(x, other, alpha=1):
    return basic.sub(x, other if alpha == 1 else other * alpha)


_add.__name__, _sub.__name__ = "add", "sub"

add_, sub_ = _updating(_add), _updating(_sub)
mul_, div_ = _updating(basic.mul), _updating(basic.div)
clamp_ = clip_ = _updating(basic.clip)
masked_fill_ = _updating(masked_fill)
exp_, sqrt_ = _updating(basic.exp), _updating(basic.sqrt)
relu_, sigmoid_, tanh_ = _updating(activation.relu), _updating(activation.sigmoid), _updating(activation.tanh)


def uniform_(x, a=0.0, b=1.0):
    """Fill x with draws from ``U(a, b)`` of tinyconv's seeded generator (not recorded); returns x."""
    return _fill_random(x, backend.host_rng().uniform(a, b, x.shape))


def normal_(x, mean=0.0, std=1.0):
    """Fill x with draws from ``N(mean, std^2)`` of tinyconv's seeded generator (not recorded); returns x."""
    return _fill_random(x, backend.host_rng().normal(mean, std, x.shape))


def _fill_random(x, host):
    if x.dtype.kind != "f":
        raise TypeError(f"random fill: x must be a floating tensor, got dtype {x.dtype}")
    if is_grad_enabled() and x.requires_grad:
        raise RuntimeError(f"random fill: x (shape {x.shape}) requires grad; fill it under tinyconv.no_grad() "
                           f"(or use tinyconv.nn.init.normal_/uniform_)")
    x.data[...] = backend.get_array_module(x.data).asarray(host.astype(x.dtype, copy=False))
    x._version += 1
    return x
