"""Xception (Chollet, "Xception: deep learning with depthwise separable convolutions", 2016), as timm's
``legacy_xception`` (module names as timm's): 22,855,952 parameters, 299x299 input (at least 71x71).

A separable convolution is a depthwise 3x3 convolution (``groups = channels``: one filter per input map,
spatial correlations only) followed by a pointwise 1x1 convolution (cross-channel correlations only); neither has
a bias, a batch norm follows the pair.  The network (the paper's Figure 5) is a linear stack of such layers in
residual blocks:

- entry flow: conv 3x3/2 32, conv 3x3 64, then blocks to 128, 256 and 728 channels, each ending in a 3x3/2 max
  pooling, with a 1x1/2 convolution + batch norm on the shortcut;
- middle flow: 8 identical blocks of three ReLU-separable-BN layers at 728 channels, identity shortcut;
- exit flow: a block 728 -> 1024 (max pooling, projection shortcut), separable convolutions to 1536 and 2048,
  global average pooling, the classifier.

Initialisation as timm: convolutions Kaiming-normal (fan_out, ReLU), batch norm weight 1 and bias 0.
"""
from .. import nn
from .registry import register_model

# Figure 5: (in, out, separable layers, stride, start with ReLU, grow first) for block1 .. block12.
BLOCKS = (
    [(64, 128, 2, 2, False, True), (128, 256, 2, 2, True, True), (256, 728, 2, 2, True, True)]   # entry flow
    + [(728, 728, 3, 1, True, True)] * 8                                                           # middle flow
    + [(728, 1024, 2, 2, True, False)]                                                             # exit flow
)


class SeparableConv2d(nn.Module):
    """Depthwise ``kernel_size`` convolution (one filter per map) then pointwise 1x1, both bias-free."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, dilation,
                               groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """``reps`` x (ReLU, separable 3x3, batch norm), then 3x3/``stride`` max pooling; plus the shortcut (a 1x1
    projection + batch norm when the shape changes).  ``grow_first``: the first layer changes the width (else
    the last)."""

    def __init__(self, in_channels, out_channels, reps, stride=1, start_with_relu=True, grow_first=True):
        super().__init__()
        if out_channels != in_channels or stride != 1:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skipbn = nn.BatchNorm2d(out_channels)
        else:
            self.skip = None
        layers = []
        for i in range(reps):
            if grow_first:
                c_in, c_out = (in_channels if i == 0 else out_channels), out_channels
            else:
                c_in, c_out = in_channels, (in_channels if i < reps - 1 else out_channels)
            layers += [nn.ReLU(), SeparableConv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out)]
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x):
        skip = self.skipbn(self.skip(x)) if self.skip is not None else x
        return self.rep(x) + skip


class Xception(nn.Module):
    """timm's ``Xception`` (legacy): entry convolutions, ``block1`` .. ``block12``, exit separable convolutions."""

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.act2 = nn.ReLU()
        for i, cfg in enumerate(BLOCKS, 1):
            setattr(self, f"block{i}", Block(*cfg))
        self.conv3 = SeparableConv2d(1024, 1536, 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(1536)
        self.act3 = nn.ReLU()
        self.conv4 = SeparableConv2d(1536, 2048, 3, 1, 1)
        self.bn4 = nn.BatchNorm2d(2048)
        self.act4 = nn.ReLU()
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, num_classes)
        self.order = (["conv1", "bn1", "act1", "conv2", "bn2", "act2"] + [f"block{i}" for i in range(1, 13)]
                      + ["conv3", "bn3", "act3", "conv4", "bn4", "act4", "global_pool"])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        for name in self.order:
            x = getattr(self, name)(x)
        return self.fc(x.reshape(x.shape[0], -1))


@register_model
def xception(num_classes=1000, in_channels=3):
    """Xception (timm's ``legacy_xception``), 299x299 input, 22,855,952 parameters."""
    return Xception(num_classes, in_channels)
