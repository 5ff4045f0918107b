"""``load(path)``: an ONNX graph as a tinyconv ``Module`` that runs it with tinyconv ops (differentiable).

See ``import_ops`` for the operators and how initializers become parameters and buffers.
"""
import os
import re

import numpy as np

from ..core import Tensor
from ..nn.module import Module, Parameter
from .import_ops import OPS

_BN_STATS = {("BatchNormalization", 3), ("BatchNormalization", 4)}


def _attrs(onnx, node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class OnnxModule(Module):
    """A Module that runs an ONNX graph with tinyconv ops.

    ``onnx_names`` maps each parameter/buffer name to its initializer's ONNX name; ``input_names`` and
    ``output_names`` are the graph's.  ``forward(*inputs)`` takes one Tensor/array per graph input and returns
    the output (a tuple when the graph has several).
    """

    def __init__(self, proto):
        super().__init__()
        import onnx
        graph = proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
        self._nodes = [(n, _attrs(onnx, n)) for n in graph.node]
        unknown = sorted({n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                          for n in graph.node if n.op_type not in OPS or n.domain not in ("", "ai.onnx")})
        if unknown:
            raise NotImplementedError(f"cannot import this ONNX graph: unsupported operator(s) {', '.join(unknown)}")
        stats = {n.input[i] for n in graph.node for op, i in _BN_STATS if n.op_type == op and len(n.input) > i}
        inits = {t.name for t in graph.initializer}
        self._constants, self.onnx_names, taken = {}, {}, set()
        for t in graph.initializer:
            a = onnx.numpy_helper.to_array(t).copy()
            if a.dtype.kind != "f":
                self._constants[t.name] = a
                continue
            attr = re.sub(r"\W", "_", t.name)
            attr = "p_" + attr if not attr or attr[0].isdigit() or attr in taken or hasattr(self, attr) else attr
            while attr in taken:
                attr += "_"
            taken.add(attr)
            self.onnx_names[attr] = t.name
            if t.name in stats:
                self.register_buffer(attr, Tensor(a))
            else:
                self.register_parameter(attr, Parameter(a))
        self._attr_of = {v: k for k, v in self.onnx_names.items()}
        self.input_names = [i.name for i in graph.input if i.name not in inits]
        self.output_names = [o.name for o in graph.output]

    def forward(self, *inputs):
        if len(inputs) != len(self.input_names):
            raise TypeError(f"this ONNX graph takes {len(self.input_names)} input(s) ({', '.join(self.input_names)}), "
                            f"got {len(inputs)}")
        env = dict(self._constants)
        for name, attr in self._attr_of.items():
            env[name] = getattr(self, attr)
        for name, x in zip(self.input_names, inputs):
            env[name] = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        env[""] = None
        for node, attrs in self._nodes:
            args = [env[i] for i in node.input]
            while args and args[-1] is None:       # trailing optional inputs left out
                args.pop()
            try:
                out = OPS[node.op_type](self, node, attrs, *args)
            except NotImplementedError as e:
                raise NotImplementedError(f"ONNX node {node.name or node.op_type} ({node.op_type}): {e}") from None
            outs = out if isinstance(out, list) else [out]
            for name, v in zip(node.output, outs):
                env[name] = v
        ys = [env[n] if isinstance(env[n], Tensor) else Tensor(env[n]) for n in self.output_names]
        return ys[0] if len(ys) == 1 else tuple(ys)


def load(path_or_proto):
    """Load an ONNX model (a path, bytes or an ``onnx.ModelProto``) as an ``OnnxModule`` in eval mode."""
    import onnx
    if isinstance(path_or_proto, onnx.ModelProto):
        proto = path_or_proto
    elif isinstance(path_or_proto, (bytes, bytearray)):
        proto = onnx.load_from_string(bytes(path_or_proto))
    else:
        path = os.fspath(path_or_proto)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX file {path} does not exist")
        try:
            proto = onnx.load(path)
        except Exception as e:
            raise ValueError(f"{path} cannot be read as an ONNX model ({type(e).__name__}: {e})") from None
    return OnnxModule(proto).eval()
