"""ShuffleNet v2 (Ma et al., "ShuffleNet V2: practical guidelines for efficient CNN architecture design", 2018).

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

# Table 5 of the paper: units per stage (stages 2-4; the first unit of each has stride 2) and output channels
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


@register_model
def shufflenet_v2_x0_5(**kw):
    """ShuffleNet v2 0.5x (48-96-192 channels)."""
    return ShuffleNetV2(STAGES_REPEATS, STAGES_OUT_CHANNELS["x0_5"], **kw)


@register_model
def shufflenet_v2_x1_0(**kw):
    """ShuffleNet v2 1x (116-232-464 channels), 2.3M parameters, 0.15 GMACs."""
    return ShuffleNetV2(STAGES_REPEATS, STAGES_OUT_CHANNELS["x1_0"], **kw)
