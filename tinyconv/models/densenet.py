"""DenseNet (Huang et al., "Densely connected convolutional networks", 2016).

Inside a dense block, layer ``l`` sees the concatenation of the block input and the ``k`` feature maps (the growth
rate) of every earlier layer, ``x_l = H_l([x_0, x_1, ..., x_{l-1}])``, with ``H_l`` = BN-ReLU-1x1 conv (to ``4k``,
the bottleneck) - BN-ReLU-3x3 conv (to ``k``).  Between blocks a transition (BN-ReLU-1x1 conv halving the
channels, 2x2 average pooling) shrinks the maps.  Layout, keys and initialisation are torchvision's
(densenet121/169/201; densenet264 is the same class with the paper's 6-12-64-48 blocks, 33,337,704 parameters).

Memory.  Written naively, layer ``l`` concatenates all its predecessors into a fresh tensor: the block copies
``O(L^2)`` feature maps in forward, and every copy is kept for backward.  Here the block allocates its output once,
``(N, C_0 + L k, H, W)``, and the stack grows in place:

- forward: ``s_l = cat(s_{l-1}, x_l)`` (``append_channels``, functions/shape.py) writes only the ``k`` new channels ``x_l`` into the
  buffer and returns the view ``buffer[:, :C_l]``; ``s_{l-1}`` already lies there.  Every concatenation the
  block makes is a view of one array: ``O(L k)`` channels copied in all instead of ``O(L^2 k)``.
- backward: the gradient of ``s_l`` splits into views ``dY[:, :C_{l-1}]`` (to ``s_{l-1}``) and ``dY[:, C_{l-1}:]``
  (to ``x_l``); nothing is copied.  The only per-layer work on the whole stack is the unavoidable sum of the two
  gradients that reach ``s_{l-1}`` (from this concatenation and from layer ``l``'s batch norm): one pass over the
  stack per layer, never more.
- ``memory_efficient=True`` (Pleiss et al., "Memory-efficient implementation of DenseNets", 2017; torchvision's
  flag) also stops keeping the bottleneck's BN-ReLU-conv1x1 intermediates, each as large as the stack: they are
  recomputed from the stack during backward (``recompute``, functions/recompute.py), so a block stores ``O(L)`` maps rather than
  ``O(L^2)``, at the price of a second forward of the bottleneck.
"""
from .. import nn
from ..backend import get_array_module
from ..core import is_grad_enabled
from ..functions import relu
from ..functions.recompute import recompute
from ..functions.shape import append_channels
from .registry import register_model

# Table 1 of the paper: layers per dense block, with (growth rate, stem filters) per network.
CONFIGS = {121: (32, (6, 12, 24, 16), 64), 169: (32, (6, 12, 32, 32), 64), 201: (32, (6, 12, 48, 32), 64),
           264: (32, (6, 12, 64, 48), 64)}


class _DenseLayer(nn.Module):
    """``H_l``: BN-ReLU-1x1 conv (``bn_size * k``) - BN-ReLU-3x3 conv (``k``), dropout ``drop_rate``; takes the
    stack ``s_{l-1}`` (all earlier features, one tensor) and returns the ``k`` new maps."""

    def __init__(self, num_input_features, growth_rate, bn_size, drop_rate, memory_efficient=False):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop = nn.Dropout(drop_rate)
        self.memory_efficient = memory_efficient

    def bottleneck(self, stack):
        return self.conv1(self.relu1(self.norm1(stack)))

    def forward(self, stack):
        if self.memory_efficient and is_grad_enabled() and stack.requires_grad:
            bn = self.norm1  # its running statistics are updated by the first run only
            keep = (bn.running_mean, bn.running_var, bn.num_batches_tracked) \
                if self.training and bn.running_mean is not None else ()
            out = recompute(self.bottleneck, stack, keep=keep)
        else:
            out = self.bottleneck(stack)
        return self.drop(self.conv2(self.relu2(self.norm2(out))))


class _DenseBlock(nn.ModuleDict):
    """``denselayer1`` ... ``denselayerL``; returns the stack of the input and all ``L`` layers' features."""

    def __init__(self, num_layers, num_input_features, bn_size, growth_rate, drop_rate, memory_efficient=False):
        super().__init__()
        self.growth_rate = growth_rate
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size,
                                                     drop_rate, memory_efficient)

    def forward(self, x):
        n, c, h, w = x.shape
        buffer = get_array_module(x.data).empty((n, c + len(self) * self.growth_rate, h, w), x.dtype)
        stack = x
        for i, layer in enumerate(self.values()):
            stack = append_channels(stack, layer(stack), buffer, first=i == 0)
        return stack


class _Transition(nn.Sequential):
    """BN-ReLU-1x1 conv (``num_output_features``) - 2x2 average pooling."""

    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """``features``: stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), dense blocks of ``block_config`` layers with
    transitions halving the channels between them, final BN; then ReLU, global average pooling, ``classifier``.

    growth_rate: ``k``; num_init_features: the stem's filters; bn_size: the bottleneck width in units of ``k``;
    drop_rate: dropout after each layer; memory_efficient: recompute the bottlenecks in backward (see above).
    Initialisation as torchvision: convolutions Kaiming normal (fan_in), BN 1/0, the classifier's bias 0.
    """

    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
                 drop_rate=0.0, num_classes=1000, in_channels=3, memory_efficient=False):
        super().__init__()
        self.features = nn.Sequential()
        self.features.conv0 = nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2, padding=3,
                                        bias=False)
        self.features.norm0 = nn.BatchNorm2d(num_init_features)
        self.features.relu0 = nn.ReLU(inplace=True)
        self.features.pool0 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers, c, bn_size, growth_rate, drop_rate, memory_efficient)
            setattr(self.features, f"denseblock{i + 1}", block)
            c += num_layers * growth_rate
            if i != len(block_config) - 1:
                setattr(self.features, f"transition{i + 1}", _Transition(c, c // 2))
                c //= 2
        self.features.norm5 = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = relu(self.features(x))
        return self.classifier(x.mean(axis=(2, 3)))


def _densenet(depth, **kw):
    growth_rate, block_config, num_init_features = CONFIGS[depth]
    return DenseNet(growth_rate, block_config, num_init_features, **kw)


@register_model
def densenet121(**kw):
    """DenseNet-121 (k=32, blocks 6-12-24-16), 8.0M parameters, 2.9 GMACs."""
    return _densenet(121, **kw)


@register_model
def densenet169(**kw):
    """DenseNet-169 (k=32, blocks 6-12-32-32), 14.1M parameters."""
    return _densenet(169, **kw)


@register_model
def densenet201(**kw):
    """DenseNet-201 (k=32, blocks 6-12-48-32), 20.0M parameters."""
    return _densenet(201, **kw)


@register_model
def densenet264(**kw):
    """DenseNet-264 (k=32, blocks 6-12-64-48, the paper's Table 1), 33.3M parameters."""
    return _densenet(264, **kw)
