"""NASNet-A Large (Zoph et al., "Learning transferable architectures for scalable image recognition", 2017).

The architecture search (a controller RNN trained by reinforcement learning) designed two cells; the network
stacks them.  A cell takes the two previous cell outputs, ``h`` (the last) and ``p`` (the one before), each
first brought to ``C`` channels, and builds five new states, each the sum of two operations applied to ``h``,
``p`` or an earlier state; the unused states are concatenated.  The *normal* cell keeps the resolution, the
*reduction* cell halves it (operations on the cell inputs get stride 2).  The operations (Figure 4 of the paper,
``NORMAL`` and ``REDUCTION`` below): separable convolutions (ReLU, depthwise kxk, pointwise 1x1, BN, applied
twice), 3x3 average or max pooling, the identity.  Where ``p`` has twice the resolution of ``h`` it is reduced by
a *factorized reduction*: two 1x1 convolutions on the even and the odd pixels, concatenated.

NASNet-A Large is "6 @ 4032": three stacks of 6 normal cells (``C`` = 168, 336, 672) between two reduction
cells, after a 3x3/2 convolution and two reduction cells as the stem; 331x331 input; 88,753,150 parameters.
Layout, parameter names and the TensorFlow "same" padding of the strided operations follow timm's
``nasnetalarge`` (the TensorFlow release ported by Cadene): its weights load by name.  In that port the cell
after a reduction cell takes as ``p`` the reduction cell's own ``p`` input (``ROWS``).
"""
import math

from .. import functions as F
from .. import nn
from .registry import register_model

# Figure 4 of the paper, as ported: for each of the five states, (op, input) on the left and on the right;
# an input is 'h', 'p' or the index of an earlier state; the left op may be None (only the right one is added).
NORMAL = [(("sep5", "h"), ("sep3", "p")),
          (("sep5", "p"), ("sep3", "p")),
          (("avg3", "h"), ("id", "p")),
          (("avg3", "p"), ("avg3", "p")),
          (("sep3", "h"), ("id", "h"))]
NORMAL_CONCAT = ["p", 0, 1, 2, 3, 4]
REDUCTION = [(("sep5", "h"), ("sep7", "p")),
             (("max3", "h"), ("sep7", "p")),
             (("avg3", "h"), ("sep5", "p")),
             ((None, None), ("avg3", 0)),          # state 3 = avgpool(state 0) + state 1
             (("sep3", 0), ("max3", "h"))]
REDUCTION_ADD = {3: 1}                              # a state added to state 3 without an operation
REDUCTION_CONCAT = [1, 2, 3, 4]


def nasnet_rows(cells_per_stack=6):
    """The cells in order: (name, kind, C in units of the penultimate filter count / 4, x input, x_prev input).

    Stem: conv0, two reduction cells (C/4 and C/2); then three stacks (C, 2C, 4C) of a first cell (``p`` by
    factorized reduction) and ``cells_per_stack - 1`` normal cells, with a reduction cell before stacks 2 and 3.
    """
    rows = [("cell_stem_0", "stem0", 1, "conv0", None), ("cell_stem_1", "stem1", 2, "cell_stem_0", "conv0")]
    x, x_prev, i = "cell_stem_1", "cell_stem_0", 0
    for stack, mult in enumerate((4, 8, 16)):
        if stack:
            name = f"reduction_cell_{stack - 1}"
            rows.append((name, "reduction", mult, x, x_prev))
            x = name                                   # the next cell keeps the reduction cell's x_prev
        for j in range(cells_per_stack):
            rows.append((f"cell_{i}", "first" if j == 0 else "normal", mult, x, x_prev))
            x, x_prev, i = f"cell_{i}", x, i + 1
    return rows


def _same_pad(size, k, s):
    """TensorFlow's "same" padding (before, after) of one axis for a kxk window of stride s."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding computed from the input size (asymmetric when odd)."""

    def forward(self, x):
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = _same_pad(x.shape[2], kh, sh)
        left, right = _same_pad(x.shape[3], kw, sw)
        return super().forward(F.pad(x, (left, right, top, bottom)))


class PoolSame(nn.Module):
    """3x3 max or average pooling of stride 2 with TensorFlow's "same" padding (-inf for max, 0 for average)."""

    def __init__(self, kind, kernel_size=3, stride=2):
        super().__init__()
        self.kind, self.k, self.s = kind, kernel_size, stride

    def forward(self, x):
        top, bottom = _same_pad(x.shape[2], self.k, self.s)
        left, right = _same_pad(x.shape[3], self.k, self.s)
        x = F.pad(x, (left, right, top, bottom), value=-float("inf") if self.kind == "max" else 0.0)
        pool = F.max_pool2d if self.kind == "max" else F.avg_pool2d
        return pool(x, self.k, self.s)


def _conv(cin, cout, k, stride=1, groups=1):
    if stride == 1:
        return nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False)
    return Conv2dSame(cin, cout, k, stride, groups=groups, bias=False)


def _bn(c):
    return nn.BatchNorm2d(c, eps=0.001, momentum=0.1)


class SeparableConv2d(nn.Module):
    """Depthwise kxk then pointwise 1x1 (no biases)."""

    def __init__(self, cin, cout, k, stride):
        super().__init__()
        self.depthwise_conv2d = _conv(cin, cin, k, stride, groups=cin)
        self.pointwise_conv2d = _conv(cin, cout, 1)

    def forward(self, x):
        return self.pointwise_conv2d(self.depthwise_conv2d(x))


class BranchSeparables(nn.Module):
    """The "sepK" operation: (ReLU, separable kxk, BN) twice; the stride in the first.  ``stem_cell``: the
    first one already maps to ``cout`` channels (the stem's first cell, whose ``p`` is the 96-channel conv0)."""

    def __init__(self, cin, cout, k, stride=1, stem_cell=False):
        super().__init__()
        mid = cout if stem_cell else cin
        self.act_1 = nn.ReLU()
        self.separable_1 = SeparableConv2d(cin, mid, k, stride)
        self.bn_sep_1 = _bn(mid)
        self.act_2 = nn.ReLU()
        self.separable_2 = SeparableConv2d(mid, cout, k, 1)
        self.bn_sep_2 = _bn(cout)

    def forward(self, x):
        x = self.bn_sep_1(self.separable_1(self.act_1(x)))
        return self.bn_sep_2(self.separable_2(self.act_2(x)))


class ActConvBn(nn.Sequential):
    """ReLU, 1x1 convolution, BN: brings a cell input to ``C`` channels."""

    def __init__(self, cin, cout):
        super().__init__()
        self.act = nn.ReLU()
        self.conv = _conv(cin, cout, 1)
        self.bn = _bn(cout)


def _operation(op, c, stride, cin=None, stem_cell=False):
    if op.startswith("sep"):
        return BranchSeparables(c if cin is None else cin, c, int(op[3:]), stride, stem_cell)
    if stride == 2:
        return PoolSame("max" if op == "max3" else "avg")
    if op == "avg3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"NASNet: unknown operation {op!r} with stride {stride}")


class Cell(nn.Module):
    """One NASNet-A cell of ``kind`` ('stem0', 'stem1', 'first', 'normal', 'reduction') with ``C`` channels per
    state; ``in_x``, ``in_prev``: the channels of its inputs (``x`` gives ``h``, ``x_prev`` gives ``p``)."""

    def __init__(self, kind, C, in_x, in_prev):
        super().__init__()
        self.kind = kind
        reduction = kind in ("stem0", "stem1", "reduction")
        self.table, self.concat = (REDUCTION, REDUCTION_CONCAT) if reduction else (NORMAL, NORMAL_CONCAT)
        self.extra = REDUCTION_ADD if reduction else {}
        self.conv_1x1 = ActConvBn(in_x, C)
        if kind in ("stem1", "first"):        # p has twice h's resolution: factorized reduction
            half = C // 2
            self.act = nn.ReLU()
            self.path_1 = nn.Sequential()
            self.path_1.avgpool = nn.AvgPool2d(1, stride=2, count_include_pad=False)
            self.path_1.conv = _conv(in_prev, half, 1)
            self.path_2 = nn.Sequential()
            self.path_2.pad = nn.ZeroPad2d((-1, 1, -1, 1))   # shift by one pixel: the odd positions
            self.path_2.avgpool = nn.AvgPool2d(1, stride=2, count_include_pad=False)
            self.path_2.conv = _conv(in_prev, half, 1)
            self.final_path_bn = _bn(2 * half)
        elif kind in ("normal", "reduction"):
            self.conv_prev_1x1 = ActConvBn(in_prev, C)
        for i, pair in enumerate(self.table):
            for side, (op, src) in zip(("left", "right"), pair):
                if op is None or op == "id":
                    continue
                stride = 2 if reduction and src in ("h", "p") else 1
                stem_p = kind == "stem0" and src == "p"
                module = _operation(op, C, stride, cin=in_x if stem_p else None, stem_cell=stem_p)
                setattr(self, f"comb_iter_{i}_{side}", module)

    def prepare(self, x, x_prev):
        h = self.conv_1x1(x)
        if self.kind == "stem0":
            return h, x
        if self.kind in ("stem1", "first"):
            r = self.act(x_prev)
            return h, self.final_path_bn(F.cat([self.path_1(r), self.path_2(r)], dim=1))
        return h, self.conv_prev_1x1(x_prev)

    def forward(self, x, x_prev=None):
        h, p = self.prepare(x, x_prev)
        states = {"h": h, "p": p}
        for i, pair in enumerate(self.table):
            terms = []
            for side, (op, src) in zip(("left", "right"), pair):
                if op is None:
                    continue
                v = states[src]
                terms.append(v if op == "id" else getattr(self, f"comb_iter_{i}_{side}")(v))
            if i in self.extra:
                terms.append(states[self.extra[i]])
            states[i] = terms[0] + terms[1]
        return F.cat([states[k] for k in self.concat], dim=1)


class NASNetALarge(nn.Module):
    """``conv0`` (3x3/2, no padding, BN), the cells of ``nasnet_rows``, ReLU, global average pooling,
    ``last_linear``.  penultimate_filters: the output channels (24 C of the last stack); stem_size: conv0's."""

    def __init__(self, num_classes=1000, in_channels=3, stem_size=96, penultimate_filters=4032, cells_per_stack=6,
                 drop_rate=0.0):
        super().__init__()
        unit = penultimate_filters // 24 // 4        # C/4 of the first stack: 42
        self.conv0 = nn.Sequential()
        self.conv0.conv = nn.Conv2d(in_channels, stem_size, 3, stride=2, bias=False)
        self.conv0.bn = _bn(stem_size)
        self.rows = nasnet_rows(cells_per_stack)
        channels = {"conv0": stem_size}
        for name, kind, mult, x, x_prev in self.rows:
            C = unit * mult
            setattr(self, name, Cell(kind, C, channels[x], channels[x_prev] if x_prev else stem_size))
            channels[name] = C * (6 if kind in ("first", "normal") else 4)
        self.act = nn.ReLU()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.last_linear = nn.Linear(channels[self.rows[-1][0]], num_classes)

    def forward(self, x):
        out = {"conv0": self.conv0(x)}
        for name, _, _, x_name, prev_name in self.rows:
            out[name] = getattr(self, name)(out[x_name], out[prev_name] if prev_name else None)
        x = self.global_pool(self.act(out[self.rows[-1][0]]))
        return self.last_linear(self.head_drop(x.reshape(x.shape[0], -1)))


@register_model
def nasnet_a_large(**kw):
    """NASNet-A Large (6 @ 4032), 88.8M parameters, 331x331 input, 23.8 GMACs."""
    return NASNetALarge(**kw)
