"""Inception-v4 and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and
the impact of residual connections on learning", 2016), as timm builds them (module names as timm's).

Both take 299x299 images (at least 75x75).  Every convolution is a bias-free convolution + batch norm (eps 0.001)
+ ReLU (``BasicConv2d``), except the 1x1 "up" convolutions of the residual blocks, which have a bias and no norm.

- ``inception_v4`` (Figures 3-9): stem (Fig. 3), 4 x Inception-A (35x35), Reduction-A, 7 x Inception-B (17x17),
  Reduction-B, 3 x Inception-C (8x8), average pooling, dropout, classifier; 42,679,816 parameters.
- ``inception_resnet_v2`` (Figures 15-19; timm's stem, Inception-v3's): 10 x block35 (scale 0.17), Reduction-A,
  20 x block17 (scale 0.10), Reduction-B, 10 x block8 (scale 0.20, the last without ReLU), 1x1 conv to 1536;
  55,843,464 parameters.  Residual branches are scaled down before the addition (Section 3.3:
  ``x + scale * up(branches(x))``), which the paper found necessary to keep training stable.

Average poolings inside the blocks exclude the zero padding from the average (timm's ``count_include_pad=False``).
Initialisation: PyTorch's defaults for the convolutions and the classifier, batch norm weight 1 and bias 0.
"""
from .. import functional as F
from .. import nn
from .googlenet import BasicConv2d  # bias-free conv, batch norm (eps 0.001), ReLU
from .registry import register_model


def chain(*rows):
    """A Sequential of ``BasicConv2d`` from ``(in, out, kernel[, stride=1[, padding=0]])`` rows."""
    rows = [tuple(r) + (1, 0)[len(r) - 3:] for r in rows]
    return nn.Sequential(*[BasicConv2d(i, o, kernel_size=k, stride=s, padding=p) for i, o, k, s, p in rows])


def avg_pool():
    """3x3/1 average pooling with padding 1 that averages over the real (unpadded) inputs only."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Branches(nn.Module):
    """Parallel branches ``branch0, branch1, ...`` concatenated along channels."""

    def __init__(self, *branches):
        super().__init__()
        for i, b in enumerate(branches):
            setattr(self, f"branch{i}", b)
        self.n = len(branches)

    def forward(self, x):
        return F.cat([getattr(self, f"branch{i}")(x) for i in range(self.n)], 1)


# ------------------------------------------------------------------------------------ Inception-v4 blocks ----
def mixed_3a():
    """Stem, Figure 3: max pool 3x3/2 | conv 3x3/2 96 (64 -> 160 channels)."""
    return Branches(nn.MaxPool2d(3, stride=2), chain((64, 96, 3, 2)))


def mixed_4a():
    """Stem: 1x1 64 -> 3x3 96 | 1x1 64 -> 1x7 -> 7x1 -> 3x3 96 (160 -> 192 channels)."""
    return Branches(chain((160, 64, 1), (64, 96, 3)),
                    chain((160, 64, 1), (64, 64, (1, 7), 1, (0, 3)), (64, 64, (7, 1), 1, (3, 0)), (64, 96, 3)))


def mixed_5a():
    """Stem: conv 3x3/2 192 | max pool 3x3/2 (192 -> 384 channels)."""
    return Branches(chain((192, 192, 3, 2)), nn.MaxPool2d(3, stride=2))


def inception_a(c=384):
    """Figure 4 (35x35): 1x1 96 | 1x1 64 -> 3x3 96 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg pool -> 1x1 96."""
    return Branches(chain((c, 96, 1)), chain((c, 64, 1), (64, 96, 3, 1, 1)),
                    chain((c, 64, 1), (64, 96, 3, 1, 1), (96, 96, 3, 1, 1)),
                    nn.Sequential(avg_pool(), BasicConv2d(c, 96, kernel_size=1)))


def reduction_a(c, k, l, m, n):
    """Figure 7 (35 -> 17): 3x3/2 n | 1x1 k -> 3x3 l -> 3x3/2 m | max pool 3x3/2."""
    return Branches(chain((c, n, 3, 2)), chain((c, k, 1), (k, l, 3, 1, 1), (l, m, 3, 2)), nn.MaxPool2d(3, stride=2))


def inception_b(c=1024):
    """Figure 5 (17x17): 1x1 384 | 1x1 192 -> 1x7 224 -> 7x1 256 | 1x1 192 -> 7x1, 1x7, 7x1, 1x7 | pool -> 1x1 128."""
    h, v = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
    return Branches(chain((c, 384, 1)), chain((c, 192, 1), (192, 224, *h), (224, 256, *v)),
                    chain((c, 192, 1), (192, 192, *v), (192, 224, *h), (224, 224, *v), (224, 256, *h)),
                    nn.Sequential(avg_pool(), BasicConv2d(c, 128, kernel_size=1)))


def reduction_b(c=1024):
    """Figure 8 (17 -> 8): 1x1 192 -> 3x3/2 192 | 1x1 256 -> 1x7 256 -> 7x1 320 -> 3x3/2 320 | max pool 3x3/2."""
    return Branches(chain((c, 192, 1), (192, 192, 3, 2)),
                    chain((c, 256, 1), (256, 256, (1, 7), 1, (0, 3)), (256, 320, (7, 1), 1, (3, 0)), (320, 320, 3, 2)),
                    nn.MaxPool2d(3, stride=2))


class InceptionC(nn.Module):
    """Figure 6 (8x8): 1x1 256 | 1x1 384 -> (1x3 256, 3x1 256) | 1x1 384 -> 3x1 448 -> 1x3 512 -> (1x3, 3x1 256)
    | avg pool -> 1x1 256 (1536 -> 1536 channels)."""

    def __init__(self, c=1536):
        super().__init__()
        self.branch0 = BasicConv2d(c, 256, kernel_size=1)
        self.branch1_0 = BasicConv2d(c, 384, kernel_size=1)
        self.branch1_1a = BasicConv2d(384, 256, kernel_size=(1, 3), padding=(0, 1))
        self.branch1_1b = BasicConv2d(384, 256, kernel_size=(3, 1), padding=(1, 0))
        self.branch2_0 = BasicConv2d(c, 384, kernel_size=1)
        self.branch2_1 = BasicConv2d(384, 448, kernel_size=(3, 1), padding=(1, 0))
        self.branch2_2 = BasicConv2d(448, 512, kernel_size=(1, 3), padding=(0, 1))
        self.branch2_3a = BasicConv2d(512, 256, kernel_size=(1, 3), padding=(0, 1))
        self.branch2_3b = BasicConv2d(512, 256, kernel_size=(3, 1), padding=(1, 0))
        self.branch3 = nn.Sequential(avg_pool(), BasicConv2d(c, 256, kernel_size=1))

    def forward(self, x):
        b1 = self.branch1_0(x)
        b2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        return F.cat([self.branch0(x), self.branch1_1a(b1), self.branch1_1b(b1),
                      self.branch2_3a(b2), self.branch2_3b(b2), self.branch3(x)], 1)


# Inception-v4, Figure 9: the stages in order, (block factory, repeats).
INCEPTION_V4 = [
    (mixed_3a, 1), (mixed_4a, 1), (mixed_5a, 1),
    (inception_a, 4), (lambda: reduction_a(384, 192, 224, 256, 384), 1),
    (inception_b, 7), (reduction_b, 1),
    (InceptionC, 3),
]


class InceptionV4(nn.Module):
    """``features`` (the stem convolutions, then ``INCEPTION_V4``) -> global average pool -> dropout -> classifier."""

    def __init__(self, num_classes=1000, in_channels=3, dropout=0.2):
        super().__init__()
        layers = [BasicConv2d(in_channels, 32, kernel_size=3, stride=2), BasicConv2d(32, 32, kernel_size=3),
                  BasicConv2d(32, 64, kernel_size=3, padding=1)]
        for block, repeats in INCEPTION_V4:
            layers += [block() for _ in range(repeats)]
        self.features = nn.Sequential(*layers)
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.head_drop = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1536, num_classes)

    def forward(self, x):
        x = self.global_pool(self.features(x))
        return self.last_linear(self.head_drop(x.reshape(x.shape[0], -1)))


# -------------------------------------------------------------------------- Inception-ResNet-v2 blocks ----
class ResidualBlock(nn.Module):
    """``relu(x + scale * conv2d(cat(branches(x))))``: Figures 16 (block35), 17 (block17) and 19 (block8)."""

    def __init__(self, branches, width, channels, scale, relu=True):
        super().__init__()
        self.scale = scale
        for i, b in enumerate(branches):
            setattr(self, f"branch{i}", b)
        self.n = len(branches)
        self.conv2d = nn.Conv2d(width, channels, kernel_size=1)
        self.relu = nn.ReLU() if relu else None

    def forward(self, x):
        y = F.cat([getattr(self, f"branch{i}")(x) for i in range(self.n)], 1)
        y = self.conv2d(y) * self.scale + x
        return self.relu(y) if self.relu is not None else y


def block35(scale=0.17, c=320):
    """35x35: 1x1 32 | 1x1 32 -> 3x3 32 | 1x1 32 -> 3x3 48 -> 3x3 64, then 1x1 up to 320."""
    return ResidualBlock([chain((c, 32, 1)), chain((c, 32, 1), (32, 32, 3, 1, 1)),
                          chain((c, 32, 1), (32, 48, 3, 1, 1), (48, 64, 3, 1, 1))], 128, c, scale)


def block17(scale=0.10, c=1088):
    """17x17: 1x1 192 | 1x1 128 -> 1x7 160 -> 7x1 192, then 1x1 up to 1088."""
    return ResidualBlock([chain((c, 192, 1)),
                          chain((c, 128, 1), (128, 160, (1, 7), 1, (0, 3)), (160, 192, (7, 1), 1, (3, 0)))],
                         384, c, scale)


def block8(scale=0.20, relu=True, c=2080):
    """8x8: 1x1 192 | 1x1 192 -> 1x3 224 -> 3x1 256, then 1x1 up to 2080."""
    return ResidualBlock([chain((c, 192, 1)),
                          chain((c, 192, 1), (192, 224, (1, 3), 1, (0, 1)), (224, 256, (3, 1), 1, (1, 0)))],
                         448, c, scale, relu)


def mixed_5b():
    """After the stem (timm's, as Inception-v3's): 1x1 96 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96
    | avg pool -> 1x1 64 (192 -> 320 channels)."""
    return Branches(chain((192, 96, 1)), chain((192, 48, 1), (48, 64, 5, 1, 2)),
                    chain((192, 64, 1), (64, 96, 3, 1, 1), (96, 96, 3, 1, 1)),
                    nn.Sequential(avg_pool(), BasicConv2d(192, 64, kernel_size=1)))


def mixed_7a(c=1088):
    """Reduction-B of Inception-ResNet-v2 (Figure 18, 17 -> 8): 1x1 256 -> 3x3/2 384
    | 1x1 256 -> 3x3/2 288 | 1x1 256 -> 3x3 288 -> 3x3/2 320 | max pool 3x3/2 (1088 -> 2080 channels)."""
    return Branches(chain((c, 256, 1), (256, 384, 3, 2)), chain((c, 256, 1), (256, 288, 3, 2)),
                    chain((c, 256, 1), (256, 288, 3, 1, 1), (288, 320, 3, 2)), nn.MaxPool2d(3, stride=2))


class InceptionResNetV2(nn.Module):
    """timm's ``InceptionResnetV2``: stem, mixed_5b, repeat (10 x block35), mixed_6a, repeat_1 (20 x block17),
    mixed_7a, repeat_2 (9 x block8), block8 (no ReLU), conv2d_7b, global pool, dropout, classifier."""

    def __init__(self, num_classes=1000, in_channels=3, dropout=0.0):
        super().__init__()
        self.conv2d_1a = BasicConv2d(in_channels, 32, kernel_size=3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, kernel_size=3)
        self.conv2d_2b = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, kernel_size=1)
        self.conv2d_4a = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = mixed_5b()
        self.repeat = nn.Sequential(*[block35() for _ in range(10)])
        self.mixed_6a = reduction_a(320, 256, 256, 384, 384)
        self.repeat_1 = nn.Sequential(*[block17() for _ in range(20)])
        self.mixed_7a = mixed_7a()
        self.repeat_2 = nn.Sequential(*[block8() for _ in range(9)])
        self.block8 = block8(scale=1.0, relu=False)
        self.conv2d_7b = BasicConv2d(2080, 1536, kernel_size=1)
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.head_drop = nn.Dropout(dropout)
        self.classif = nn.Linear(1536, num_classes)
        self.order = ["conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "maxpool_5a",
                      "mixed_5b", "repeat", "mixed_6a", "repeat_1", "mixed_7a", "repeat_2", "block8", "conv2d_7b",
                      "global_pool"]

    def forward(self, x):
        for name in self.order:
            x = getattr(self, name)(x)
        return self.classif(self.head_drop(x.reshape(x.shape[0], -1)))


def _init_bn(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


@register_model
def inception_v4(num_classes=1000, in_channels=3, dropout=0.2):
    """Inception-v4 (timm's ``inception_v4``), 299x299 input, 42,679,816 parameters."""
    return _init_bn(InceptionV4(num_classes, in_channels, dropout))


@register_model
def inception_resnet_v2(num_classes=1000, in_channels=3, dropout=0.0):
    """Inception-ResNet-v2 (timm's ``inception_resnet_v2``), 299x299 input, 55,843,464 parameters."""
    return _init_bn(InceptionResNetV2(num_classes, in_channels, dropout))
