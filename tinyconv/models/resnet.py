"""ResNet (He et al., "Deep residual learning for image recognition", 2015), ResNeXt (Xie et al., "Aggregated
residual transformations for deep neural networks", 2016) and SE-ResNet (Hu et al., "Squeeze-and-excitation
networks", 2017).

A residual block learns the increment of its input, ``y = relu(F(x) + shortcut(x))``; the shortcut is the
identity, or a 1x1 convolution with batch norm (a projection, the paper's option B) where the block changes the
number of channels or the resolution.  The basic block (ResNet-18/34) has two 3x3 convolutions; the bottleneck
(ResNet-50/101/152) reduces with a 1x1, convolves with a 3x3 and expands 4x with a second 1x1.  ResNeXt splits
the bottleneck's 3x3 into ``groups`` paths (cardinality) of ``width_per_group`` channels each; SE-ResNet rescales
each channel of the bottleneck's output by a gate computed from its global average (squeeze-and-excitation).

Layout, state-dict keys and initialisation are torchvision's (conv Kaiming-normal fan_out, batch norm 1/0,
``zero_init_residual`` optional), so its weights load by name.  torchvision ("ResNet v1.5") strides the
bottleneck in its 3x3 convolution; the paper (v1, and the lectures' FLOPs row: 3.8, 7.6, 11.3 G for ResNet-50,
101, 152) strides the first 1x1: ``stride_in_1x1=True`` builds that (same parameters, fewer MACs).  SE-ResNet-50
follows timm's ``legacy_seresnet50`` (stride in the 1x1, SE reduction 16, ``fc1``/``fc2`` 1x1 convolutions with
bias): 28,088,024 parameters.

The graph is as deep as the network (ResNet-152: some 500 functions); the engine's backward is iterative, so no
recursion limit applies.
"""
from .. import nn
from .registry import register_model

# Table 1 of the ResNet paper (lecture 002): blocks per stage conv2_x..conv5_x; the stage widths are 64, 128,
# 256, 512 (times the block's expansion at its output), the stages after the first start with stride 2.
LAYERS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
WIDTHS = [64, 128, 256, 512]


def conv3x3(in_planes, out_planes, stride=1, groups=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, **unused):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x):  # nn.conv_norm_activation(conv, bn, relu, x) is relu(bn(conv(x))), fused in evaluation
        out = nn.conv_norm_activation(self.conv1, self.bn1, self.relu, x)
        return nn.conv_norm_activation(self.conv2, self.bn2, None, out)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)


class ConvNorm(nn.Sequential):
    """The projection shortcut: a 1x1 convolution and its batch norm, keys ``0`` and ``1`` (torchvision's
    ``Sequential``); ``nn.conv_norm_activation`` fuses them in evaluation."""

    def forward(self, x):
        return nn.conv_norm_activation(self[0], self[1], None, x) if len(self) == 2 else super().forward(x)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (grouped for ResNeXt) -> 1x1 expand (x4), plus the shortcut.

    The 3x3 has ``width = planes * base_width / 64 * groups`` channels (ResNeXt-50 32x4d: 128 in the first
    stage); the stride sits in the 3x3 (torchvision) or in the first 1x1 (``stride_in_1x1``, the paper).
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, stride_in_1x1=False):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, s1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, s3, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x):  # nn.conv_norm_activation(conv, bn, relu, x) is relu(bn(conv(x))), fused in evaluation
        out = nn.conv_norm_activation(self.conv1, self.bn1, self.relu, x)
        out = nn.conv_norm_activation(self.conv2, self.bn2, self.relu, out)
        return nn.conv_norm_activation(self.conv3, self.bn3, None, out)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)


class SEModule(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``, fc1/fc2 1x1 convolutions with bias
    (C -> C/reduction -> C), one gate per channel."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        s = x.mean(axis=(2, 3), keepdims=True)
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(s))))


class SEBottleneck(Bottleneck):
    """The bottleneck with an SE module on its residual branch, before the addition (timm's legacy SE-ResNet:
    stride in the first 1x1)."""

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, stride_in_1x1=True,
                 reduction=16):
        super().__init__(inplanes, planes, stride, downsample, groups, base_width, stride_in_1x1)
        self.se_module = SEModule(planes * self.expansion, reduction)

    def residual(self, x):
        return self.se_module(super().residual(x))


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), four stages of ``block`` (``layers`` blocks each, widths
    64-128-256-512 times ``block.expansion``), global average pooling, ``fc``.

    block: ``BasicBlock``, ``Bottleneck`` or ``SEBottleneck``; layers: blocks per stage (Table 1);
    groups, width_per_group: ResNeXt's cardinality and path width; zero_init_residual: start every block's
    last batch norm at 0 (each block then begins as the identity); stride_in_1x1: the paper's v1 bottleneck.
    Any input of at least 32x32 works (five halvings, then the adaptive pooling).
    """

    def __init__(self, block, layers, num_classes=1000, in_channels=3, zero_init_residual=False, groups=1,
                 width_per_group=64, stride_in_1x1=False):
        super().__init__()
        self.inplanes, self.groups, self.base_width = 64, groups, width_per_group
        self.stride_in_1x1 = stride_in_1x1
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (planes, blocks) in enumerate(zip(WIDTHS, layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, planes, blocks, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:  # projection shortcut (option B)
            downsample = ConvNorm(conv1x1(self.inplanes, planes * block.expansion, stride),
                                  nn.BatchNorm2d(planes * block.expansion))
        kw = dict(groups=self.groups, base_width=self.base_width, stride_in_1x1=self.stride_in_1x1)
        layers = [block(self.inplanes, planes, stride, downsample, **kw)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(nn.conv_norm_activation(self.conv1, self.bn1, self.relu, x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        return self.fc(x.reshape(x.shape[0], -1))


@register_model
def resnet18(**kw):
    """ResNet-18 (basic blocks 2-2-2-2), 11.7M parameters, 1.8 GMACs."""
    return ResNet(BasicBlock, LAYERS[18], **kw)


@register_model
def resnet34(**kw):
    """ResNet-34 (basic blocks 3-4-6-3), 21.8M parameters, 3.6 GMACs."""
    return ResNet(BasicBlock, LAYERS[34], **kw)


@register_model
def resnet50(**kw):
    """ResNet-50 (bottlenecks 3-4-6-3), 25.6M parameters, 4.1 GMACs (3.9 with ``stride_in_1x1=True``)."""
    return ResNet(Bottleneck, LAYERS[50], **kw)


@register_model
def resnet101(**kw):
    """ResNet-101 (bottlenecks 3-4-23-3), 44.5M parameters, 7.8 GMACs (7.6 with ``stride_in_1x1=True``)."""
    return ResNet(Bottleneck, LAYERS[101], **kw)


@register_model
def resnet152(**kw):
    """ResNet-152 (bottlenecks 3-8-36-3), 60.2M parameters, 11.5 GMACs (11.3 with ``stride_in_1x1=True``)."""
    return ResNet(Bottleneck, LAYERS[152], **kw)


@register_model
def resnext50_32x4d(**kw):
    """ResNeXt-50 with cardinality 32 and 4 channels per path (ResNeXt paper, Table 1), 25.0M parameters."""
    return ResNet(Bottleneck, LAYERS[50], groups=32, width_per_group=4, **kw)


@register_model
def resnext101_32x8d(**kw):
    """ResNeXt-101 32x8d, 88.8M parameters."""
    return ResNet(Bottleneck, LAYERS[101], groups=32, width_per_group=8, **kw)


@register_model
def resnext101_64x4d(**kw):
    """ResNeXt-101 64x4d (the lectures' "ResNeXt-101 64x4"), 83.5M parameters."""
    return ResNet(Bottleneck, LAYERS[101], groups=64, width_per_group=4, **kw)


@register_model
def se_resnet50(**kw):
    """SE-ResNet-50 (SENet paper; timm's ``legacy_seresnet50``), 28.1M parameters."""
    kw.setdefault("stride_in_1x1", True)
    return ResNet(SEBottleneck, LAYERS[50], **kw)
