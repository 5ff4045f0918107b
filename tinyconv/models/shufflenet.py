"""ShuffleNet (Zhang et al., "ShuffleNet: an extremely efficient convolutional neural network for mobile
devices", 2017) and ShuffleNet v2 (Ma et al., "ShuffleNet V2: practical guidelines for efficient CNN
architecture design", 2018).

v1's unit is a ResNet bottleneck whose 1x1 convolutions are grouped (``g`` groups) to save computation; a
channel shuffle after the first one lets the groups of the second see every group's output.  The 3x3 is
depthwise, with no ReLU after it; a downsampling unit concatenates a 3x3/2 average pooling of its input instead
of adding it.  The first 1x1 of the network (24 input channels) is not grouped.  ``shufflenet_v1_g3`` is the
paper's 1x model with g = 3 (Table 1: 240-480-960 channels, about 140 MFLOPs; the layout of the authors'
released code, Megvii's ShuffleNet-Series).

Each unit splits its channels in two halves (channel split): one half passes unchanged, the other goes through
1x1 -> depthwise 3x3 -> 1x1 (equal widths: the guideline "equal channel width minimises memory access");
the halves are concatenated and the channels shuffled (``channel_shuffle`` with 2 groups) so information
crosses between the halves in the next unit.  A downsampling unit (stride 2) has no split: both branches see the
whole input (the left one depthwise 3x3/2 then 1x1), doubling the channels.  Layout, keys and PyTorch's default
initialisation are torchvision's (``shufflenet_v2_x1_0``: 2,278,604 parameters).
"""
from .. import functions as F
from .. import nn
from .registry import register_model

# ShuffleNet v1, Table 1 of its paper: units per stage (stages 2-4) and output channels per stage for g groups.
V1_REPEATS = [4, 8, 4]
V1_OUT_CHANNELS = {1: [144, 288, 576], 2: [200, 400, 800], 3: [240, 480, 960], 4: [272, 544, 1088],
                   8: [384, 768, 1536]}

# ShuffleNet v2, Table 5 of its paper: units per stage (stages 2-4; the first unit of each has stride 2) and output channels
# (conv1, stage 2, 3, 4, conv5) for each width.
STAGES_REPEATS = [4, 8, 4]
STAGES_OUT_CHANNELS = {"x0_5": [24, 48, 96, 192, 1024], "x1_0": [24, 116, 232, 464, 1024],
                       "x1_5": [24, 176, 352, 704, 1024], "x2_0": [24, 244, 488, 976, 2048]}


def _depthwise(c, stride):
    return nn.Conv2d(c, c, kernel_size=3, stride=stride, padding=1, groups=c, bias=False)


class InvertedResidual(nn.Module):
    """ShuffleNet v2 unit: ``shuffle(cat(x1, branch2(x2)))`` after a channel split (stride 1), or
    ``shuffle(cat(branch1(x), branch2(x)))`` (stride 2)."""

    def __init__(self, inp, oup, stride):
        super().__init__()
        if stride == 1 and inp != oup:
            raise ValueError(f"ShuffleNet v2 unit: stride 1 needs inp == oup, got {inp} -> {oup}")
        self.stride = stride
        c = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(_depthwise(inp, stride), nn.BatchNorm2d(inp),
                                         nn.Conv2d(inp, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            _depthwise(c, stride), nn.BatchNorm2d(c),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = F.cat([x1, self.branch2(x2)], dim=1)
        else:
            out = F.cat([self.branch1(x), self.branch2(x)], dim=1)
        return F.channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """``conv1`` (3x3/2, 24) + 3x3/2 max pool, ``stage2``-``stage4`` (the table), ``conv5`` (1x1), global
    average pooling, ``fc``."""

    def __init__(self, stages_repeats, stages_out_channels, num_classes=1000, in_channels=3):
        super().__init__()
        c = stages_out_channels[0]
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c),
                                   nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (repeats, out) in enumerate(zip(stages_repeats, stages_out_channels[1:4])):
            units = [InvertedResidual(c, out, 2)] + [InvertedResidual(out, out, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{i + 2}", nn.Sequential(*units))
            c = out
        last = stages_out_channels[-1]
        self.conv5 = nn.Sequential(nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU(inplace=True))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean(axis=(2, 3)))


class ShuffleV1Unit(nn.Module):
    """``relu(x + branch(x))`` (stride 1) or ``cat(avgpool3x3/2(x), relu(branch(x)))`` (stride 2), where
    ``branch`` = grouped 1x1 (BN, ReLU) -> shuffle -> depthwise 3x3 (BN) -> grouped 1x1 (BN)."""

    def __init__(self, inp, oup, groups, stride, first_group=False):
        super().__init__()
        self.stride, self.groups = stride, groups
        mid = oup // 4
        out = oup - inp if stride == 2 else oup
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid, 1, groups=1 if first_group else groups, bias=False), nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True), _depthwise(mid, stride), nn.BatchNorm2d(mid))
        self.branch_main_2 = nn.Sequential(nn.Conv2d(mid, out, 1, groups=groups, bias=False), nn.BatchNorm2d(out))
        if stride == 2:
            self.branch_proj = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x):
        y = self.branch_main_1(x)
        if self.groups > 1:
            y = F.channel_shuffle(y, self.groups)
        y = self.branch_main_2(y)
        if self.stride == 1:
            return F.relu(x + y)
        return F.cat([self.branch_proj(x), F.relu(y)], dim=1)


class ShuffleNetV1(nn.Module):
    """``first_conv`` (3x3/2, 24) + 3x3/2 max pool, ``features`` (the units of stages 2-4), global average
    pooling, ``classifier`` (linear, no bias)."""

    def __init__(self, groups=3, num_classes=1000, in_channels=3):
        super().__init__()
        c = 24
        self.first_conv = nn.Sequential(nn.Conv2d(in_channels, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c),
                                        nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        units = []
        for stage, (repeats, out) in enumerate(zip(V1_REPEATS, V1_OUT_CHANNELS[groups])):
            for i in range(repeats):
                units.append(ShuffleV1Unit(c, out, groups, 2 if i == 0 else 1, first_group=stage == 0 and i == 0))
                c = out
        self.features = nn.Sequential(*units)
        self.classifier = nn.Linear(c, num_classes, bias=False)

    def forward(self, x):
        x = self.features(self.maxpool(self.first_conv(x)))
        return self.classifier(x.mean(axis=(2, 3)))


@register_model
def shufflenet_v1_g3(**kw):
    """ShuffleNet v1 1x with g = 3 groups (240-480-960 channels), 1.9M parameters, about 140 MFLOPs."""
    return ShuffleNetV1(groups=3, **kw)


@register_model
def shufflenet_v2_x0_5(**kw):
    """ShuffleNet v2 0.5x (48-96-192 channels)."""
    return ShuffleNetV2(STAGES_REPEATS, STAGES_OUT_CHANNELS["x0_5"], **kw)


@register_model
def shufflenet_v2_x1_0(**kw):
    """ShuffleNet v2 1x (116-232-464 channels), 2.3M parameters, 0.15 GMACs."""
    return ShuffleNetV2(STAGES_REPEATS, STAGES_OUT_CHANNELS["x1_0"], **kw)
