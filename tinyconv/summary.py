"""``tinyconv.summary(model, input_shape)``: a per-layer table of output shapes, parameters and MACs.

Nothing of size is computed.  The model runs once, in evaluation mode under ``no_grad``, on a zero input, inside
``backend.shape_only()``: there every convolution records its multiply-accumulates and returns zeros of its
output shape instead of computing, and every matrix product (``linear``, ``matmul``) records its own; the cheap
element-wise operations (batch norm, ReLU, additions, poolings) run for real on that one image.  Each module's
``forward`` is wrapped for the duration (an instance attribute, removed afterwards) to attribute the MACs and
the output shape to it, so a VGG-16 at 224x224 is summarised in well under a second.

MACs count convolutions and matrix products only, as the usual reference tables do (e.g. 15.47 G for VGG-16,
4.09 G for ResNet-50):

- convolution: ``N * K * OH * OW * (C / G) * KH * KW`` (depthwise: ``G = C``);
- linear: ``rows * in_features * out_features``; matmul ``(..., M, K) @ (..., K, P)``: ``batch * M * K * P``.

Biases, normalisation, activations and poolings are not counted.
"""
import numpy as np

from . import backend
from .core import Tensor, no_grad


class ModelSummary:
    """What ``summary`` returns; ``str()`` (or ``print``) gives the table.

    ``rows``: one dict per module shown (``name``, ``type``, ``depth``, ``output_shape``, ``params``,
    ``macs``; a module's parameters and MACs include its children's), in the order the modules first ran;
    modules that hold parameters but did not run (auxiliary heads in evaluation mode) come last with output
    shape ``None``.  ``total_params``, ``trainable_params``, ``total_macs`` (the whole forward pass, for the
    batch of ``input_shape``), ``input_shape`` (with the batch axis).
    """

    def __init__(self, rows, total_params, trainable_params, total_macs, input_shape, model_name):
        self.rows = rows
        self.total_params = total_params
        self.trainable_params = trainable_params
        self.total_macs = total_macs
        self.input_shape = input_shape
        self.model_name = model_name

    def __str__(self):
        head = ("Layer (type)", "Output shape", "Param #", "MACs")
        body = [("  " * (r["depth"] - 1) + f"{r['name'].rsplit('.', 1)[-1]} ({r['type']})",
                 "--" if r["output_shape"] is None else str(list(r["output_shape"])),
                 f"{r['params']:,}", f"{r['macs']:,}") for r in self.rows]
        widths = [max(len(row[i]) for row in [head] + body) for i in range(4)]
        fmt = lambda row: "  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1])]  # noqa: E731
                                    + [c.rjust(w) for c, w in zip(row[2:], widths[2:])])
        rule = "=" * len(fmt(head))
        lines = [rule, fmt(head), rule] + [fmt(row) for row in body] + [rule]
        lines += [f"{self.model_name}, input {list(self.input_shape)}",
                  f"Total params: {self.total_params:,}",
                  f"Trainable params: {self.trainable_params:,}",
                  f"Non-trainable params: {self.total_params - self.trainable_params:,}",
                  f"Total MACs: {self.total_macs:,} ({self.total_macs / 1e9:.4g} G)", rule]
        return "\n".join(lines)

    __repr__ = __str__


def _shape_of(out):
    if isinstance(out, Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        return tuple(_shape_of(o) for o in out)
    return None


def summary(model, input_shape, depth=3, dtype=np.float32):
    """Summarise ``model`` for inputs of ``input_shape`` without running the expensive operations.

    model: a ``tinyconv.nn.Module`` taking one tensor.  input_shape: ``(C, H, W)`` for one image (a batch
    axis of 1 is added) or the full shape with the batch axis, ``(N, C, H, W)``; any other length is used as
    given (include the batch axis).  depth: modules nested deeper than this are folded into their parent's
    row (their parameters and MACs are included there); ``None`` shows every module.
    Returns a ``ModelSummary``; ``print`` it for the table.  The model's training mode is restored afterwards.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    params = list(model.parameters())
    device = params[0].device if params else "cpu"
    x = Tensor(backend.xp_for(device).zeros(shape, dtype))
    modules = [(name, m) for name, m in model.named_modules() if name]
    records = {}

    def wrap(name, m, forward):
        def counted(*args, **kwargs):
            before = counter.total
            out = forward(*args, **kwargs)
            records.setdefault(name, {"macs": 0})
            records[name]["macs"] += counter.total - before
            records[name]["output_shape"] = _shape_of(out)
            return out
        return counted

    modes = {id(m): m.training for m in model.modules()}
    try:
        for name, m in modules:
            object.__setattr__(m, "forward", wrap(name, m, m.forward))
        model.eval()
        # the values are meaningless (zeros, or unfilled weights under skip_init): silence overflow warnings
        with no_grad(), backend.shape_only() as counter, np.errstate(all="ignore"):
            model(x)
            total_macs = counter.total
    finally:
        for _, m in modules:
            m.__dict__.pop("forward", None)
        for m in model.modules():
            object.__setattr__(m, "training", modes[id(m)])

    def row(name, m, rec):
        n = sum(p.numel() for p in m.parameters())
        return {"name": name, "type": type(m).__name__, "depth": name.count(".") + 1, "params": n,
                "output_shape": rec.get("output_shape"), "macs": rec.get("macs", 0)}

    shown = lambda name: depth is None or name.count(".") + 1 <= depth  # noqa: E731
    # definition order, parents before children (as torchinfo); modules never called are listed when they
    # hold parameters
    rows = [row(name, m, records.get(name, {})) for name, m in modules
            if shown(name) and (name in records or any(True for _ in m.parameters()))]
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return ModelSummary(rows, total, trainable, total_macs, shape, type(model).__name__)
