"""The ONNX operators ``tinyconv.onnx.load`` runs, each as tinyconv ops: ``OPS[op_type](module, node, attrs,
*inputs)`` returns the output value (or a list of them).

Floating-point initializers become ``Parameter``s (BatchNormalization's running statistics become buffers), so
the imported model trains, saves (``state_dict``) and moves to the GPU like any other Module; their state-dict
keys are the ONNX names with every character that is not a letter, digit or ``_`` replaced by ``_``
(``OnnxModule.onnx_names`` maps them back).  In ``train()`` mode BatchNormalization uses batch statistics and
Dropout drops, as the PyTorch layers they came from would.

Values that the graph computes from shapes (``Shape -> Gather -> Concat -> Reshape``, as PyTorch's exporter
writes ``x.view(x.size(0), -1)``) stay NumPy arrays and are folded as the graph runs.  Operators are those
``export`` writes plus those of the classic ImageNet models in the ONNX model zoo, in the old opsets too
(attributes that later became inputs, ``broadcast``/``axis`` on Add/Mul, ``auto_pad``).  ``load`` names every
unsupported operator of a graph in one ``NotImplementedError``.
"""
import re

import numpy as np

from .. import functional as F
from ..core import Function, Tensor
from ..functions.activation import _erf


class Erf(Function):
    """``y = erf(x)``; needed for GELU as PyTorch's exporter writes it."""

    def forward(self, x):
        self.x = x
        return _erf(x).astype(x.dtype, copy=False)

    def backward(self, gy):
        xp = np if isinstance(self.x, np.ndarray) else __import__("cupy")
        # d erf(x)/dx = 2/sqrt(pi) exp(-x^2)
        return gy * (2 / np.sqrt(np.pi)) * xp.exp(-self.x * self.x).astype(gy.dtype, copy=False)


def _const(v, what):
    """A value that must be known when the graph runs (a shape, axes, pads): a NumPy array."""
    if isinstance(v, Tensor):        # an initializer used as a constant: its current value, no gradient
        return v.numpy()
    return np.asarray(v)


def _is_const(*vs):
    return all(v is None or not isinstance(v, Tensor) for v in vs)


def _tensor(v, like=None):
    if isinstance(v, Tensor):
        return v
    a = np.asarray(v)
    if like is not None and a.dtype.kind == "f":
        a = a.astype(like.dtype)
    return Tensor(a)


def _pads(node, attrs, x, kernel, strides, dilations):
    """(symmetric (PH, PW), or None and the explicit [top, left, bottom, right]) from pads/auto_pad."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * 4
        for i, n in enumerate(x.shape[2:]):
            total = max((-(-n // strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - n, 0)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0] * 4
    else:
        pads = list(attrs.get("pads", [0] * 4))
    if pads[:2] == pads[2:]:
        return tuple(pads[:2]), None
    return (0, 0), pads


def _explicit_pad(x, pads, value):
    top, left, bottom, right = pads
    return F.pad(x, (left, right, top, bottom), value=value)


def _conv(m, node, a, x, w, b=None):
    if x.ndim != 4:
        raise NotImplementedError(f"Conv on {x.ndim - 2}-d data (only 2-d)")
    k = list(a.get("kernel_shape", w.shape[2:]))
    s, d = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    p, explicit = _pads(node, a, x, k, s, d)
    if explicit:
        x = _explicit_pad(x, explicit, 0.0)
    return F.conv2d(x, _tensor(w, x), None if b is None else _tensor(b, x), tuple(s), p, tuple(d),
                    a.get("group", 1))


def _pool(kind):
    def run(m, node, a, x):
        k = list(a["kernel_shape"])
        s, d = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
        p, explicit = _pads(node, a, x, k, s, d)
        ceil = bool(a.get("ceil_mode", 0))
        if kind == "max":
            if explicit:
                x = _explicit_pad(x, explicit, -np.inf)
            return F.max_pool2d(x, tuple(k), tuple(s), p, tuple(d), ceil)
        if explicit:
            if not a.get("count_include_pad", 0):
                raise NotImplementedError("AveragePool with asymmetric padding and count_include_pad=0")
            x = _explicit_pad(x, explicit, 0.0)
        return F.avg_pool2d(x, tuple(k), tuple(s), p, ceil, bool(a.get("count_include_pad", 0)))
    return run


def _batch_norm(m, node, a, x, gamma, beta, mean, var):
    return F.batch_norm(x, mean, var, _tensor(gamma, x), _tensor(beta, x), training=m.training,
                        momentum=1 - a.get("momentum", 0.9), eps=a.get("epsilon", 1e-5))


def _layer_norm(m, node, a, x, scale, bias=None):
    """ONNX LayerNormalization (opset 17): normalise over the axes from ``axis`` to the last."""
    if len(node.output) > 1:
        raise NotImplementedError("LayerNormalization's optional Mean/InvStdDev outputs")
    axis = a.get("axis", -1) % x.ndim
    shape = tuple(x.shape[axis:])
    scale = F.reshape(_tensor(scale, x), shape) if tuple(scale.shape) != shape else _tensor(scale, x)
    bias = None if bias is None else (F.reshape(_tensor(bias, x), shape) if tuple(bias.shape) != shape
                                      else _tensor(bias, x))
    return F.layer_norm(x, shape, scale, bias, eps=a.get("epsilon", 1e-5))


def _gemm(m, node, a, A, B, C=None):
    A = F.transpose(A, 0, 1) if a.get("transA", 0) else A
    B = _tensor(B, A)
    y = F.matmul(A, F.transpose(B, 0, 1) if a.get("transB", 0) else B)
    if a.get("alpha", 1.0) != 1.0:
        y = y * a["alpha"]
    if C is not None:
        C = _tensor(C, A)
        y = y + (C * a["beta"] if a.get("beta", 1.0) != 1.0 else C)
    return y


def _old_broadcast(a, b, attrs):
    """Opset < 7: ``broadcast=1, axis=k`` aligns ``b``'s axes with ``a``'s starting at ``k``."""
    if attrs.get("broadcast") and "axis" in attrs and getattr(b, "ndim", 0) and b.ndim < a.ndim:
        axis = attrs["axis"] % a.ndim
        shape = (1,) * axis + tuple(b.shape) + (1,) * (a.ndim - axis - b.ndim)
        b = b.reshape(shape) if isinstance(b, np.ndarray) else F.reshape(b, shape)
    return b


def _binary(np_op, tc_op):
    def run(m, node, attrs, a, b):
        b = _old_broadcast(a, b, attrs)
        if _is_const(a, b):
            return np_op(np.asarray(a), np.asarray(b)).astype(np.result_type(a, b), copy=False)
        like = a if isinstance(a, Tensor) else b
        return tc_op(_tensor(a, like), _tensor(b, like))
    return run


def _variadic(tc_op):
    def run(m, node, a, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = tc_op(_tensor(y, x if isinstance(x, Tensor) else None), _tensor(x, y if isinstance(y, Tensor) else None))
        return y
    return run


def _reshape(m, node, a, x, shape=None):
    shape = [int(v) for v in (_const(shape, "Reshape's shape") if shape is not None else a["shape"])]
    shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]   # 0 copies the input's size
    return x.reshape(shape) if not isinstance(x, Tensor) else F.reshape(x, tuple(shape))


def _flatten(m, node, a, x):
    axis = a.get("axis", 1) % max(x.ndim, 1)
    shape = (int(np.prod(x.shape[:axis])), -1)
    return x.reshape(shape) if not isinstance(x, Tensor) else F.reshape(x, shape)


def _axes(node, a, axes, ndim):
    axes = a.get("axes") if axes is None else _const(axes, f"{node.op_type}'s axes")
    return None if axes is None else tuple(int(v) % ndim for v in np.atleast_1d(axes))


def _squeeze(m, node, a, x, axes=None):
    axes = _axes(node, a, axes, x.ndim)
    if axes is None:
        axes = tuple(i for i, n in enumerate(x.shape) if n == 1)
    shape = tuple(n for i, n in enumerate(x.shape) if i not in axes)
    return x.reshape(shape) if not isinstance(x, Tensor) else F.reshape(x, shape)


def _unsqueeze(m, node, a, x, axes=None):
    axes = _axes(node, a, axes, x.ndim + len(np.atleast_1d(a.get("axes") if axes is None else _const(axes, ""))))
    shape = list(x.shape)
    for ax in sorted(axes):
        shape.insert(ax, 1)
    return x.reshape(shape) if not isinstance(x, Tensor) else F.reshape(x, tuple(shape))


def _concat(m, node, a, *xs):
    if _is_const(*xs):
        return np.concatenate([np.atleast_1d(x) for x in xs], axis=a["axis"])
    like = next(x for x in xs if isinstance(x, Tensor))
    return F.cat([_tensor(x, like) for x in xs], dim=a["axis"])


def _split(m, node, a, x, split=None):
    axis = a.get("axis", 0) % x.ndim
    sizes = a.get("split") if split is None else [int(v) for v in _const(split, "Split's sizes")]
    n = len(node.output)
    if sizes is None:
        sizes = [-(-x.shape[axis] // a.get("num_outputs", n))] * n
        sizes[-1] = x.shape[axis] - sum(sizes[:-1])
    return list(F.split(x, list(sizes), dim=axis))


def _pad(m, node, a, x, pads=None, value=None, axes=None):
    pads = [int(v) for v in (a["pads"] if pads is None else _const(pads, "Pad's pads"))]
    mode = a.get("mode", b"constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant" or axes is not None:
        raise NotImplementedError("Pad other than constant padding of all axes")
    value = a.get("value", 0.0) if value is None else float(_const(value, "Pad's value"))
    k = len(pads) // 2
    torch_order = []
    for i in reversed(range(k)):
        torch_order += [pads[i], pads[i + k]]
    return F.pad(x, tuple(torch_order), value=value)


def _reduce(tc_op, np_op):
    def run(m, node, a, x, axes=None):
        axes = _axes(node, a, axes, x.ndim)
        if axes is None and a.get("noop_with_empty_axes", 0):
            return x
        keep = bool(a.get("keepdims", 1))
        if not isinstance(x, Tensor):
            return np_op(x, axis=axes, keepdims=keep)
        return tc_op(x, axis=axes, keepdims=keep)
    return run


def _slice(m, node, a, x, starts=None, ends=None, axes=None, steps=None):
    if starts is None:                                 # opset < 10: attributes
        starts, ends, axes = a["starts"], a["ends"], a.get("axes")
    starts, ends = _const(starts, "Slice's starts"), _const(ends, "Slice's ends")
    axes = range(len(starts)) if axes is None else _const(axes, "Slice's axes")
    steps = [1] * len(starts) if steps is None else _const(steps, "Slice's steps")
    index = [slice(None)] * x.ndim
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        n = x.shape[int(ax)]
        st, en = int(np.clip(st, -n - 1, n)), int(np.clip(en, -n - 1, n))   # INT64_MAX means "to the end"
        index[int(ax) % x.ndim] = slice(st, en, int(sp))
    return x[tuple(index)]


def _gather(m, node, a, x, idx):
    idx = _const(idx, "Gather's indices")
    if not isinstance(x, Tensor):
        return np.take(x, idx, axis=a.get("axis", 0))
    axis = a.get("axis", 0) % x.ndim
    return x[(slice(None),) * axis + (idx.astype(np.int64),)]


def _cast(m, node, a, x):
    from onnx import helper
    dtype = helper.tensor_dtype_to_np_dtype(a["to"])
    if not isinstance(x, Tensor):
        return np.asarray(x).astype(dtype)
    return x if x.dtype == dtype else F.astype(x, dtype)


def _softmax(tc_op):
    def run(m, node, a, x):
        axis = a.get("axis", -1 if m.opset >= 13 else 1)
        if m.opset < 13 and axis % x.ndim != x.ndim - 1:      # old semantics: flatten from axis, then softmax
            return F.reshape(tc_op(F.reshape(x, (int(np.prod(x.shape[:axis])), -1)), dim=1), x.shape)
        return tc_op(x, dim=axis)
    return run


def _clip(m, node, a, x, lo=None, hi=None):
    lo = a.get("min") if lo is None else float(_const(lo, "Clip's min"))
    hi = a.get("max") if hi is None else float(_const(hi, "Clip's max"))
    return F.clip(x, lo, hi)


def _dropout(m, node, a, x, ratio=None, training_mode=None):
    p = a.get("ratio", 0.5) if ratio is None else float(_const(ratio, "Dropout's ratio"))
    y = F.dropout(x, p, training=m.training)
    return [y, None] if len(node.output) > 1 else y


def _lrn(m, node, a, x):
    # ONNX: x / (bias + alpha/size * sum x^2)^beta, the same convention as tinyconv (alpha divided by size)
    return F.local_response_norm(x, a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))


def _adaptive_global(tc_op):
    return lambda m, node, a, x: tc_op(x, (1, 1))


def _hard_sigmoid(m, node, a, x):
    return F.clip(x * a.get("alpha", 0.2) + a.get("beta", 0.5), 0.0, 1.0)


def _constant(m, node, a):
    from onnx import numpy_helper
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for k in ("value_float", "value_int"):
        if k in a:
            return np.asarray(a[k], np.float32 if k == "value_float" else np.int64)
    for k in ("value_floats", "value_ints"):
        if k in a:
            return np.asarray(a[k], np.float32 if k == "value_floats" else np.int64)
    raise NotImplementedError("Constant without a value, value_float(s) or value_int(s)")


def _constant_of_shape(m, node, a, shape):
    from onnx import numpy_helper
    value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
    return np.full(tuple(int(v) for v in _const(shape, "ConstantOfShape's shape")), value.reshape(-1)[0])


def _expand(m, node, a, x, shape):
    shape = tuple(np.broadcast_shapes(tuple(x.shape), tuple(int(v) for v in _const(shape, "Expand's shape"))))
    return np.broadcast_to(x, shape) if not isinstance(x, Tensor) else F.broadcast_to(x, shape)


def _unary(tc_op, np_op=None):
    def run(m, node, a, x):
        if np_op is not None and not isinstance(x, Tensor):
            return np_op(x)
        return tc_op(_tensor(x))
    return run


OPS = {
    "Conv": _conv, "MaxPool": _pool("max"), "AveragePool": _pool("avg"),
    "GlobalAveragePool": _adaptive_global(F.adaptive_avg_pool2d), "GlobalMaxPool": _adaptive_global(F.adaptive_max_pool2d),
    "BatchNormalization": _batch_norm, "LayerNormalization": _layer_norm, "LRN": _lrn, "Gemm": _gemm,
    "MatMul": _binary(np.matmul, F.matmul), "Add": _binary(np.add, F.add), "Sub": _binary(np.subtract, F.sub),
    "Mul": _binary(np.multiply, F.mul), "Div": _binary(lambda a, b: a / b if a.dtype.kind == "f" else a // b, F.div),
    "Pow": _binary(np.power, F.pow), "Max": _variadic(F.maximum), "Min": _variadic(F.minimum), "Sum": _variadic(F.add),
    "Relu": _unary(F.relu), "Sigmoid": _unary(F.sigmoid), "Tanh": _unary(F.tanh), "Exp": _unary(F.exp, np.exp),
    "Log": _unary(F.log, np.log), "Sqrt": _unary(F.sqrt, np.sqrt), "Abs": _unary(F.abs, np.abs),
    "Neg": _unary(F.neg, np.negative), "Erf": _unary(Erf.apply), "Softplus": _unary(F.softplus),
    "HardSwish": _unary(F.hardswish), "HardSigmoid": _hard_sigmoid, "Clip": _clip,
    "LeakyRelu": lambda m, node, a, x: F.leaky_relu(x, a.get("alpha", 0.01)),
    "Softmax": _softmax(F.softmax), "LogSoftmax": _softmax(F.log_softmax),
    "Concat": _concat, "Split": _split, "Flatten": _flatten, "Reshape": _reshape,
    "Transpose": lambda m, node, a, x: (np.transpose(x, a.get("perm")) if not isinstance(x, Tensor) else
                                        F.permute(x, *a.get("perm", range(x.ndim)[::-1]))),
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Pad": _pad, "Slice": _slice, "Gather": _gather,
    "Dropout": _dropout, "Identity": lambda m, node, a, x: x, "Cast": _cast, "Expand": _expand,
    "Shape": lambda m, node, a, x: np.asarray(x.shape, np.int64)[a.get("start", 0):a.get("end", None)],
    "Constant": _constant, "ConstantOfShape": _constant_of_shape,
    "ReduceMean": _reduce(F.mean, np.mean), "ReduceSum": _reduce(F.sum, np.sum),
    "ReduceMax": _reduce(F.amax, np.max),
    "ReduceMin": _reduce(F.amin, np.min),
}
