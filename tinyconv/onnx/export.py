"""``export(model, example_input, path)``: one traced forward pass written as an ONNX graph.

The model runs once in evaluation mode on ``example_input`` (made to require a gradient, so every operation
that depends on it is recorded, whatever the parameters' ``requires_grad``).  The recorded graph is walked
from the outputs back along each Function's ``edges``; each Function becomes one or a few ONNX nodes
(``_CONVERTERS``, keyed by the Function's class name), parameters and buffers become initializers named by
their state-dict key, and any other constant met on the way (a mask, a scale) becomes an initializer too.
Shapes are those of the example: the exported graph has a fixed input shape (batch size included).

Conventions that differ and are translated: LRN (ONNX and tinyconv both use ``alpha/size``, so ``alpha`` is
written unchanged), pooling's ``ceil_mode`` (recovered from the recorded output size), PyTorch-order ``pad``
(last axis first) to ONNX's ``[begins..., ends...]``, ``Linear``'s ``x W^T + b`` as ``Gemm(transB=1)``.
A Function with no converter raises ``NotImplementedError`` naming it.
"""
import numpy as np

from .. import backend
from ..core import Tensor, enable_grad

DEFAULT_OPSET = 17
MIN_OPSET = 13


class _Graph:
    """ONNX nodes and initializers under construction."""

    def __init__(self, onnx, opset):
        self.onnx, self.opset, self.nodes, self.inits, self.count = onnx, opset, [], [], 0

    def fresh(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, array, base="const"):
        name = self.fresh(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values):
        return self.const(np.asarray(values, dtype=np.int64), "shape")

    def node(self, op, inputs, n_out=1, **attrs):
        outs = [self.fresh(op) for _ in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op, ["" if i is None else i for i in inputs], outs,
                                                     name=outs[0], **attrs))
        return outs if n_out > 1 else outs[0]

    def reduce(self, op, x, axes, keepdims):
        """ReduceSum takes its axes as an input from opset 13, the other reductions from opset 18."""
        if op == "ReduceSum" or self.opset >= 18:
            return self.node(op, [x, self.ints(axes)], keepdims=int(keepdims))
        return self.node(op, [x], axes=list(axes), keepdims=int(keepdims))


def _shape(f, i):
    return tuple(f.inputs[i].shape)


def _out_shape(f, i=0):
    return tuple(f.out_meta[i][0])


# -- converters: (graph, function, input names) -> output name(s) ---------------------------------------------
def _conv(g, f, x, w, b=None):
    groups = _shape(f, 0)[1] // _shape(f, 1)[1]
    (ph, pw), (sh, sw), (dh, dw) = f.padding, f.stride, f.dilation
    return g.node("Conv", [x, w] + ([b] if b else []), group=groups, pads=[ph, pw, ph, pw], strides=[sh, sw],
                  dilations=[dh, dw], kernel_shape=list(_shape(f, 1)[2:]))


def _ceil_mode(f, dilation=(1, 1)):
    """Recover ``ceil_mode`` from the recorded output size (it was only needed to compute that size)."""
    floor = [(n + 2 * p - d * (k - 1) - 1) // s + 1
             for n, p, d, k, s in zip(_shape(f, 0)[2:], f.padding, dilation, f.kernel, f.stride)]
    return int(list(_out_shape(f)[2:]) != floor)


def _max_pool(g, f, x):
    (ph, pw) = f.padding
    return g.node("MaxPool", [x], kernel_shape=list(f.kernel), strides=list(f.stride), pads=[ph, pw, ph, pw],
                  dilations=list(f.dilation), ceil_mode=_ceil_mode(f, f.dilation))


def _avg_pool(g, f, x):
    if f.divisor_override:
        raise NotImplementedError("AvgPool2d with divisor_override has no ONNX equivalent")
    (ph, pw) = f.padding
    return g.node("AveragePool", [x], kernel_shape=list(f.kernel), strides=list(f.stride), pads=[ph, pw, ph, pw],
                  count_include_pad=int(bool(f.count_include_pad)), ceil_mode=_ceil_mode(f))


def _adaptive_matrix(n, out):
    """The (out, n) averaging matrix of adaptive average pooling (PyTorch's windows)."""
    P = np.zeros((out, n), np.float64)
    for i in range(out):
        lo, hi = (i * n) // out, -((-(i + 1) * n) // out)
        P[i, lo:hi] = 1.0 / (hi - lo)
    return P


def _adaptive_avg(g, f, x):
    (H, W), (OH, OW) = _shape(f, 0)[2:], _out_shape(f)[2:]
    if (OH, OW) == (1, 1):
        return g.node("GlobalAveragePool", [x])
    if H % OH == 0 and W % OW == 0:
        return g.node("AveragePool", [x], kernel_shape=[H // OH, W // OW], strides=[H // OH, W // OW])
    dt = f.out_meta[0][1]
    y = g.node("MatMul", [g.const(_adaptive_matrix(H, OH).astype(dt), "pool_rows"), x])   # (OH, H) @ x
    return g.node("MatMul", [y, g.const(_adaptive_matrix(W, OW).T.astype(dt), "pool_cols")])  # @ (W, OW)


def _adaptive_max(g, f, x):
    (H, W), (OH, OW) = _shape(f, 0)[2:], _out_shape(f)[2:]
    if (OH, OW) == (1, 1):
        return g.node("GlobalMaxPool", [x])
    if H % OH or W % OW:
        raise NotImplementedError(f"AdaptiveMaxPool2d from {H}x{W} to {OH}x{OW} (windows of unequal size) has "
                                  "no ONNX equivalent")
    return g.node("MaxPool", [x], kernel_shape=[H // OH, W // OW], strides=[H // OH, W // OW])


def _batch_norm(g, f, x, gamma, beta):
    if f.training or f.running_mean is None:
        raise NotImplementedError("BatchNorm using batch statistics (training mode, or track_running_stats="
                                  "False) cannot be exported: call model.eval() with running statistics")
    C, dt = _shape(f, 0)[1], f.out_meta[0][1]
    gamma = gamma or g.const(np.ones(C, dt), "bn_weight")
    beta = beta or g.const(np.zeros(C, dt), "bn_bias")
    y = g.node("BatchNormalization", [x, gamma, beta, g.buffer(f.running_mean), g.buffer(f.running_var)],
               epsilon=float(f.eps))
    if f.activation == "relu":  # batch_norm_activation: the ReLU it applied in the same pass
        return g.node("Relu", [y])
    if f.activation == "relu6":
        return g.node("Clip", [y, g.const(np.asarray(0, dt)), g.const(np.asarray(6, dt))])
    return y


def _layer_norm(g, f, x, gamma, beta):
    """Written out (ONNX's LayerNormalization only normalises trailing axes): (x - mean) / sqrt(var + eps)."""
    axes = list(f.axes)
    d = g.node("Sub", [x, g.reduce("ReduceMean", x, axes, True)])
    var = g.reduce("ReduceMean", g.node("Mul", [d, d]), axes, True)
    eps = g.const(np.asarray(f.eps, f.out_meta[0][1]), "eps")
    y = g.node("Div", [d, g.node("Sqrt", [g.node("Add", [var, eps])])])
    if gamma:
        y = g.node("Mul", [y, g.node("Reshape", [gamma, g.ints(f.param_shape)])])
    if beta:
        y = g.node("Add", [y, g.node("Reshape", [beta, g.ints(f.param_shape)])])
    return y


def _linear(g, f, x, w, b=None):
    if len(_shape(f, 0)) == 2:
        return g.node("Gemm", [x, w] + ([b] if b else []), transB=1)
    y = g.node("MatMul", [x, g.node("Transpose", [w], perm=[1, 0])])
    return g.node("Add", [y, b]) if b else y


def _gelu(g, f, x):
    dt = f.out_meta[0][1]
    c = lambda v: g.const(np.asarray(v, dt), "gelu")  # noqa: E731
    if f.approximate == "tanh":   # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        x3 = g.node("Mul", [g.node("Mul", [x, x]), x])
        u = g.node("Mul", [c(np.sqrt(2 / np.pi)), g.node("Add", [x, g.node("Mul", [c(0.044715), x3])])])
        inner = g.node("Tanh", [u])
    else:                         # 0.5 x (1 + erf(x / sqrt 2))
        inner = g.node("Erf", [g.node("Mul", [x, c(1 / np.sqrt(2))])])
    return g.node("Mul", [g.node("Mul", [x, c(0.5)]), g.node("Add", [inner, c(1.0)])])


def _softplus(g, f, x):
    if f.beta != 1:
        raise NotImplementedError("Softplus with beta != 1 has no ONNX equivalent")
    return g.node("Softplus", [x])


def _pad(g, f, x):
    rank, k = len(_shape(f, 0)), len(f.pad) // 2
    begins, ends = [0] * rank, [0] * rank
    for i in range(k):                       # PyTorch order: the last axis first
        begins[rank - 1 - i], ends[rank - 1 - i] = f.pad[2 * i], f.pad[2 * i + 1]
    value = g.const(np.asarray(f.value, f.out_meta[0][1]), "pad_value")
    return g.node("Pad", [x, g.ints(begins + ends), value], mode="constant")


def _getitem(g, f, x):
    index = f.index if isinstance(f.index, tuple) else (f.index,)
    shape = _shape(f, 0)
    if any(not isinstance(i, (slice, int, np.integer)) for i in index) or len(index) > len(shape):
        raise NotImplementedError(f"indexing with {f.index!r} (only ints and slices export, as Slice)")
    starts, ends, axes, steps, drop = [], [], [], [], []
    for axis, i in enumerate(index):
        if isinstance(i, slice):
            start, stop, step = i.indices(shape[axis])
            if step < 0:
                raise NotImplementedError("indexing with a negative step cannot be exported")
        else:
            start = int(i) % shape[axis]
            stop, step = start + 1, 1
            drop.append(axis)
        starts.append(start), ends.append(stop), axes.append(axis), steps.append(step)
    y = g.node("Slice", [x, g.ints(starts), g.ints(ends), g.ints(axes), g.ints(steps)])
    return g.node("Squeeze", [y, g.ints(drop)]) if drop else y


def _unary(op, **attrs):
    return lambda g, f, x: g.node(op, [x], **attrs)


def _binary(op):
    return lambda g, f, a, b: g.node(op, [a, b])


_CONVERTERS = {
    "Conv2dFn": _conv, "DepthwiseConv2dFn": _conv, "GroupedConv2dFn": _conv,
    "MaxPool2dFn": _max_pool, "AvgPool2dFn": _avg_pool, "GlobalAvgPool2dFn": _unary("GlobalAveragePool"),
    "AdaptiveAvgPool2dFn": _adaptive_avg, "AdaptiveMaxPool2dFn": _adaptive_max,
    "BatchNorm": _batch_norm, "LayerNorm": _layer_norm, "Linear": _linear,
    "LocalResponseNormFn": lambda g, f, x: g.node("LRN", [x], size=int(f.size), alpha=float(f.alpha),
                                                  beta=float(f.beta), bias=float(f.k)),
    "Add": _binary("Add"), "Sub": _binary("Sub"), "Mul": _binary("Mul"), "Div": _binary("Div"),
    "Pow": _binary("Pow"), "Maximum": _binary("Max"), "MatMul": _binary("MatMul"),
    "Neg": _unary("Neg"), "Exp": _unary("Exp"), "Log": _unary("Log"), "Sqrt": _unary("Sqrt"), "Abs": _unary("Abs"),
    "ReLU": _unary("Relu"), "Sigmoid": _unary("Sigmoid"), "Tanh": _unary("Tanh"),
    "ReLU6": lambda g, f, x: g.node("Clip", [x, g.const(np.asarray(0, f.out_meta[0][1])),
                                            g.const(np.asarray(6, f.out_meta[0][1]))]),
    "Clip": lambda g, f, x: g.node("Clip", [x] + [None if v is None else g.const(np.asarray(v, f.out_meta[0][1]))
                                                  for v in (f.min, f.max)]),
    "LeakyReLU": lambda g, f, x: g.node("LeakyRelu", [x], alpha=float(f.negative_slope)),
    "SiLU": lambda g, f, x: g.node("Mul", [x, g.node("Sigmoid", [x])]),
    "Hardswish": _unary("HardSwish"), "Hardsigmoid": _unary("HardSigmoid", alpha=1 / 6, beta=0.5),
    "GELU": _gelu, "Softplus": _softplus,
    "Softmax": lambda g, f, x: g.node("Softmax", [x], axis=int(f.axis)),
    "LogSoftmax": lambda g, f, x: g.node("LogSoftmax", [x], axis=int(f.axis)),
    "Reshape": lambda g, f, x: g.node("Reshape", [x, g.ints(_out_shape(f))]),
    "Permute": lambda g, f, x: g.node("Transpose", [x], perm=[int(a) for a in f.axes]),
    "Concat": lambda g, f, *xs: g.node("Concat", list(xs), axis=int(f.axis)),
    "AppendChannels": lambda g, f, s, x: g.node("Concat", [s, x], axis=1),
    "Split": lambda g, f, x: g.node("Split", [x, g.ints(f.sizes)], n_out=len(f.sizes), axis=int(f.axis)),
    "Sum": lambda g, f, x: g.reduce("ReduceSum", x, list(f.axes), f.keepdims),
    "MaxMin": lambda g, f, x: g.reduce("ReduceMax" if f.is_max else "ReduceMin", x, list(f.axes), f.keepdims),
    "BroadcastTo": lambda g, f, x: g.node("Expand", [x, g.ints(_out_shape(f))]),
    "Clone": _unary("Identity"), "Pad": _pad, "GetItem": _getitem,
    "AsType": lambda g, f, x: g.node("Cast", [x], to=g.onnx.helper.np_dtype_to_tensor_dtype(
        np.dtype(f.out_meta[0][1]))),
    "MaskMultiply": lambda g, f, x: g.node("Mul", [x, g.const(backend.to_numpy(f.mask).astype(f.out_meta[0][1]),
                                                               "mask")]),
}


def supported_functions():
    """Names of the Function classes ``export`` can translate."""
    return sorted(_CONVERTERS)


def _order(outputs):
    """The recorded Functions that the outputs depend on, each after its inputs' Functions."""
    order, done, stack = [], set(), [(t._ctx, False) for t in outputs if t._ctx is not None]
    while stack:
        f, expanded = stack.pop()
        if id(f) in done:
            continue
        if expanded:
            done.add(id(f))
            order.append(f)
            continue
        stack.append((f, True))
        stack.extend((e[0], False) for e in f.edges if e is not None and e[0] is not None and id(e[0]) not in done)
    return order


def _as_inputs(example_input):
    items = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    return [Tensor(backend.to_numpy(x.data if isinstance(x, Tensor) else np.asarray(x)), requires_grad=True)
            for x in items]


def _leaf_names(model):
    """id(parameter tensor) and id(buffer array) -> state-dict key."""
    params = {id(p): k for k, p in model.named_parameters()} if hasattr(model, "named_parameters") else {}
    buffers = {id(b.data): k for k, b in model.named_buffers()} if hasattr(model, "named_buffers") else {}
    return params, buffers


def build_model(model, example_input, opset=DEFAULT_OPSET, input_names=None, output_names=None):
    """The ``onnx.ModelProto`` of one traced forward pass of ``model`` (see ``export``)."""
    import onnx
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is not supported: choose {MIN_OPSET}..{onnx.defs.onnx_opset_version()}")
    xs = _as_inputs(example_input)
    training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with enable_grad():
            out = model(*xs)
    finally:
        if hasattr(model, "train"):
            model.train(training)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if not all(isinstance(t, Tensor) for t in outs):
        raise TypeError(f"export: the model returned {type(out).__name__}; expected a Tensor or a tuple of them")
    order = _order(outs)
    missing = sorted({type(f).__name__ for f in order} - set(_CONVERTERS))
    if missing:
        raise NotImplementedError(f"cannot export to ONNX: no converter for {', '.join(missing)} "
                                  f"(supported: {', '.join(supported_functions())})")
    g = _Graph(onnx, opset)
    params, buffers = _leaf_names(model)
    input_names = list(input_names or (["input"] if len(xs) == 1 else [f"input_{i}" for i in range(len(xs))]))
    names = {("leaf", id(x)): n for x, n in zip(xs, input_names)}
    used = set()

    def leaf(t):
        key = ("leaf", id(t))
        if key not in names:
            if id(t) in params and params[id(t)] not in used:
                names[key] = params[id(t)]
                used.add(names[key])
                g.inits.append(onnx.numpy_helper.from_array(backend.to_numpy(t.data), names[key]))
            else:
                names[key] = g.const(backend.to_numpy(t.data))
        return names[key]

    def buffer(array):
        key = ("buffer", id(array))
        if key not in names:
            name = buffers.get(id(array))
            if name is None or name in used:
                names[key] = g.const(backend.to_numpy(array), "buffer")
            else:
                names[key] = name
                used.add(name)
                g.inits.append(onnx.numpy_helper.from_array(backend.to_numpy(array), name))
        return names[key]
    g.buffer = buffer

    for f in order:
        args = [None if t is None else (names[(id(e[0]), e[1])] if e is not None and e[0] is not None else leaf(t))
                for t, e in zip(f.inputs, f.edges)]
        try:
            res = _CONVERTERS[type(f).__name__](g, f, *args)
        except NotImplementedError as e:
            raise NotImplementedError(f"cannot export {type(f).__name__} to ONNX: {e}") from None
        for i, r in enumerate(res if isinstance(res, list) else [res]):
            names[(id(f), i)] = r

    output_names = list(output_names or (["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]))
    graph_outputs = []
    for t, name in zip(outs, output_names):
        src = names[(id(t._ctx), t._out_index)] if t._ctx is not None else leaf(t)
        g.nodes.append(onnx.helper.make_node("Identity", [src], [name], name=name))
        graph_outputs.append(onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(t.dtype), list(t.shape)))
    graph_inputs = [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(x.dtype),
                                                       list(x.shape)) for x, n in zip(xs, input_names)]
    graph = onnx.helper.make_graph(g.nodes, type(model).__name__, graph_inputs, graph_outputs, g.inits)
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="tinyconv",
                                   ir_version=onnx.helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, example_input, path, opset=DEFAULT_OPSET, input_names=None, output_names=None):
    """Trace ``model`` on ``example_input`` and write the graph to ``path`` as ONNX (atomically); return the path.

    ``model``: a Module (put in eval mode for the trace, its mode restored after) or any callable of Tensors.
    ``example_input``: a Tensor/array or a tuple of them; the graph keeps their shapes and dtypes.
    ``opset``: the ONNX opset (13 or newer; default 17).  The written model passes ``onnx.checker`` (with shape
    inference).  Raises ``NotImplementedError`` naming every Function that has no ONNX translation.
    """
    from ..checkpoint import atomic_write
    proto = build_model(model, example_input, opset, input_names, output_names)
    atomic_write(path, lambda f: f.write(proto.SerializeToString()))
    return path
