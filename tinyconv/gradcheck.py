"""Numerical gradient checking: compare an op's analytic backward with central differences.

For ``y = fn(*inputs)`` a fixed random weighting ``v`` turns the output into the scalar ``L = sum(v * y)``
(summed over the outputs when ``fn`` returns a tuple, as ``split`` does).
The analytic gradient ``dL/dx`` comes from ``y.backward(v)``; the numerical one from central differences

    dL/dx_i  ~  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

in float64, element by element.  For large inputs, ``directions=k`` checks k random unit directions d
instead, comparing the directional derivative ``(L(x + eps d) - L(x - eps d)) / (2 eps)`` with
``<dL/dx, d>``: k+1 evaluations instead of 2n.

Elements pass when ``|analytic - numeric| <= atol + rtol * |numeric|``.

``fn`` may be a module (``gradcheck(model, [x])``): a float32 model is checked as written, by running a deep
copy of it whose parameters and buffers are cast to float64 (the model itself is left untouched); its
parameters' gradients are checked too with ``check_params=True``.
"""
import copy

import numpy as np

from . import backend
from .core import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with central differences."""


def _outputs(y):
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def _loss(fn, inputs, vs):
    with no_grad():
        ys = _outputs(fn(*inputs))
    return float(sum((backend.to_numpy(y.data).astype(np.float64) * v).sum() for y, v in zip(ys, vs)))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, directions=None, seed=0, raise_exception=True,
              check_params=False):
    """Check the gradients of ``fn`` at ``inputs`` (a Tensor or a sequence; non-tensors pass through).

    Every floating-point tensor input with ``requires_grad`` is checked, after being copied to float64.
    ``fn`` may be a function or a module (an object with ``parameters()`` and ``double()``, such as any
    ``nn.Module``): a float32 module is checked in float64 on a deep copy with its parameters and buffers cast
    (``model`` itself is not changed); ``check_params=True`` also checks the gradient of every parameter that
    requires grad (call ``model.eval()`` first if it has dropout, whose masks change from call to call).
    ``directions``: ``None`` checks every element; an int ``k`` checks ``k`` random directions per input
    (for inputs too large to perturb one element at a time).  Returns True, or raises ``GradcheckError``
    naming the input or parameter, the element, the analytic and numerical values and the max abs/rel
    error (returns False instead when ``raise_exception=False``).
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = [Tensor(x.data.astype(np.float64, order="C"), requires_grad=x.requires_grad)
              if isinstance(x, Tensor) and x.dtype.kind == "f" else x for x in inputs]
    targets = [(f"input {i}", x) for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if hasattr(fn, "parameters") and hasattr(fn, "double"):  # a module: check a float64 copy
        fn = copy.deepcopy(fn).double()
        for name, p in fn.named_parameters():
            p.grad = None
            p.data = p.data.copy(order="C")  # perturbed through a flat view below
            if check_params and p.requires_grad:
                targets.append((f"parameter '{name}'", p))
    elif check_params:
        raise TypeError("gradcheck: check_params=True needs a module (with parameters())")
    if not targets:
        raise ValueError("gradcheck: no input requires grad")

    ys = _outputs(fn(*inputs))
    rng = np.random.default_rng(seed)
    v = [rng.standard_normal(y.shape) for y in ys]
    xp = backend.get_array_module(ys[0].data)
    # L = sum_k <v_k, y_k>: backward from each output (retaining the graph for the next one)
    live = [(y, vk) for y, vk in zip(ys, v) if y.requires_grad]
    for k, (y, vk) in enumerate(live):
        y.backward(xp.asarray(vk, dtype=y.dtype), retain_graph=k < len(live) - 1)

    for i, x in targets:
        analytic = np.zeros(x.shape) if x.grad is None else backend.to_numpy(x.grad.data).astype(np.float64)
        flat = x.data.reshape(-1)  # a view: perturbing it perturbs x
        if directions is None:
            numeric = np.zeros(x.size)
            for j in range(x.size):
                old = flat[j].item()
                flat[j] = old + eps
                plus = _loss(fn, inputs, v)
                flat[j] = old - eps
                minus = _loss(fn, inputs, v)
                flat[j] = old
                numeric[j] = (plus - minus) / (2 * eps)
            numeric = numeric.reshape(x.shape)
            ok = np.abs(analytic - numeric) <= atol + rtol * np.abs(numeric)
            if not ok.all():  # report the element that misses its tolerance by the most
                excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
                j = np.unravel_index(np.argmax(np.where(ok, -np.inf, excess)), x.shape)
                return _fail(raise_exception, i, x.shape, f"element {tuple(int(k) for k in j)}",
                             analytic[j], numeric[j], analytic, numeric)
        else:
            base = x.data.copy()
            for k in range(directions):
                d = rng.standard_normal(x.shape)
                d /= np.linalg.norm(d) or 1.0
                dd = xp.asarray(d)
                x.data[...] = base + eps * dd
                plus = _loss(fn, inputs, v)
                x.data[...] = base - eps * dd
                minus = _loss(fn, inputs, v)
                x.data[...] = base
                numeric = (plus - minus) / (2 * eps)
                a = float((analytic * d).sum())
                if abs(a - numeric) > atol + rtol * abs(numeric):
                    return _fail(raise_exception, i, x.shape, f"random direction {k}", a, numeric,
                                 np.array(a), np.array(numeric))
    return True


def _fail(raise_exception, i, shape, where, a, n, analytic, numeric):
    err = np.abs(analytic - numeric)
    rel = err / np.maximum(np.abs(numeric), 1e-12)
    msg = (f"gradcheck: gradient of {i} (shape {tuple(shape)}) disagrees at {where}: "
           f"analytic {float(a):.8g} vs numeric {float(n):.8g}; max abs error {err.max():.3g}, "
           f"max rel error {rel.max():.3g}")
    if raise_exception:
        raise GradcheckError(msg)
    return False
