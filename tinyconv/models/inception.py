"""Inception-v2 (BN-Inception) and Inception-v3.

``inception_v2``: BN-Inception (Ioffe, Szegedy, "Batch normalization", 2015, Appendix, Figure 5): GoogLeNet with
batch norm after every convolution, each 5x5 convolution replaced by two 3x3 ("double 3x3"), the 28x28 stage
widened to three modules, and stride-2 modules (3c, 4e) that replace the max poolings between stages.  The
figure's first layer is marked as a depthwise-separable convolution (depth multiplier 8); here it is an
ordinary 7x7/2 convolution, as in the common re-implementations (Caffe ``bn_inception``).  Convolutions have no
bias (batch norm supplies the shift), there is no dropout and no auxiliary head (the paper uses neither).
The branch widths are the figure's; they add up to 608 output maps for 4c and 4d and 1056 for 4e, where the
figure's output-size column says 576 and 1024 (Caffe's ``bn_inception`` builds the same widths as here).
11,285,224 parameters with 1000 classes (the lectures' comparison table gives 11.2M) and 2.03 GMACs at
224x224.

``inception_v3``: torchvision's Inception-v3 (Szegedy et al., "Rethinking the Inception architecture", 2015,
Table 1 and Figures 5-7): 5x5 convolutions factorised into 3x3s and nxn into 1xn and nx1, efficient grid
reduction, batch-normalised auxiliary classifier.  27,161,264 parameters with the auxiliary head, 23,834,568
without; torchvision's state-dict keys.  In training mode with ``aux_logits=True`` it returns
``(logits, aux)``; the auxiliary loss is weighted 0.4 (``model.aux_weight``, torchvision's reference
training).  Inputs of 299x299, at least 75x75; below 299x299 the auxiliary head pools its (smaller than
17x17) input adaptively to the 5x5 its 5x5/3 pooling gives at 299x299.
"""
from .. import functional as F
from .. import nn
from .googlenet import BasicConv2d  # bias-free conv, batch norm (eps 0.001), ReLU
from .registry import register_model


def _init_trunc_normal(model):
    """torchvision's Inception init: truncated N(0, stddev^2) in [-2, 2], stddev 0.1 unless the layer says."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=getattr(m, "stddev", 0.1), a=-2, b=2)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------------- v2 ----
# BN paper, Figure 5: name, #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool ('avg'/'max'),
# pool projection (0: the pooled input passes through), stride (2: the 3x3 branches and the pool downsample).
BN_INCEPTION = [
    ("inception3a", 64, 64, 64, 64, 96, "avg", 32, 1),
    ("inception3b", 64, 64, 96, 64, 96, "avg", 64, 1),
    ("inception3c", 0, 128, 160, 64, 96, "max", 0, 2),
    ("inception4a", 224, 64, 96, 96, 128, "avg", 128, 1),
    ("inception4b", 192, 96, 128, 96, 128, "avg", 128, 1),
    ("inception4c", 160, 128, 160, 128, 160, "avg", 128, 1),
    ("inception4d", 96, 128, 192, 160, 192, "avg", 128, 1),
    ("inception4e", 0, 128, 192, 192, 256, "max", 0, 2),
    ("inception5a", 352, 192, 320, 160, 224, "avg", 128, 1),
    ("inception5b", 352, 192, 320, 192, 224, "max", 128, 1),
]


class BNInceptionModule(nn.Module):
    """1x1 | 1x1->3x3 | 1x1->3x3->3x3 | pool(->1x1), concatenated; stride 2 drops the 1x1 branch."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, dbl_red, dbl, pool, pool_proj, stride):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1) if ch1x1 else None
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, stride=stride, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, dbl_red, kernel_size=1),
                                     BasicConv2d(dbl_red, dbl, kernel_size=3, padding=1),
                                     BasicConv2d(dbl, dbl, kernel_size=3, stride=stride, padding=1))
        pooling = (nn.AvgPool2d if pool == "avg" else nn.MaxPool2d)(3, stride=stride, padding=1)
        self.branch4 = nn.Sequential(pooling, BasicConv2d(in_channels, pool_proj, kernel_size=1)) \
            if pool_proj else pooling

    def forward(self, x):
        outs = [] if self.branch1 is None else [self.branch1(x)]
        return F.cat(outs + [self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class BNInception(nn.Module):
    """BN-Inception: the stem (two max poolings), the ten modules of ``BN_INCEPTION`` (3c and 4e downsample,
    no pooling between stages), global average pooling, the classifier."""

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.stages, c = [], 192
        for name, ch1, red, ch3, dred, dbl, pool, proj, stride in BN_INCEPTION:
            setattr(self, name, BNInceptionModule(c, ch1, red, ch3, dred, dbl, pool, proj, stride))
            self.stages.append(name)
            c = ch1 + ch3 + dbl + (proj if proj else c)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, num_classes)
        _init_trunc_normal(self)

    def forward(self, x):
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        for name in self.stages:
            x = getattr(self, name)(x)
        x = self.avgpool(x)
        return self.fc(x.reshape(x.shape[0], -1))


# ---------------------------------------------------------------------------------------------------- v3 ----
class InceptionA(nn.Module):
    """Figure 5: 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avg pool->1x1 (35x35 grid)."""

    def __init__(self, in_channels, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.avgpool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return F.cat([self.branch1x1(x), b5, b3, self.branch_pool(self.avgpool(x))], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Figure 10): 3x3/2 | 1x1->3x3->3x3/2 | max pool 3x3/2."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return F.cat([self.branch3x3(x), b3, self.maxpool(x)], 1)


class InceptionC(nn.Module):
    """Figure 6 (17x17 grid): 1x1 | 1x1->1x7->7x1 | 1x1->7x1->1x7->7x1->1x7 | avg pool->1x1."""

    def __init__(self, in_channels, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.avgpool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return F.cat([self.branch1x1(x), b7, d, self.branch_pool(self.avgpool(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | max pool 3x3/2."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return F.cat([b3, b7, self.maxpool(x)], 1)


class InceptionE(nn.Module):
    """Figure 7 (8x8 grid, expanded outputs): 1x1 | 1x1->(1x3, 3x1) | 1x1->3x3->(1x3, 3x1) | avg pool->1x1."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.avgpool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = F.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = F.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return F.cat([self.branch1x1(x), b3, d, self.branch_pool(self.avgpool(x))], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 grid: avg pool 5x5/3, 1x1 conv 128, 5x5 conv 768, FC."""

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.avgpool = nn.AvgPool2d(5, stride=3)
        self.conv0 = BasicConv2d(in_channels, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.conv1.stddev = 0.01
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = 0.001

    def forward(self, x):
        # torchvision's 5x5/3 pooling needs the 17x17 grid of a 299x299 image (it gives 5x5 there); on the
        # smaller grids of smaller images the map is average-pooled to that 5x5 adaptively instead
        x = self.avgpool(x) if min(x.shape[2:]) >= 17 else F.adaptive_avg_pool2d(x, (5, 5))
        x = self.gap(self.conv1(self.conv0(x)))
        return self.fc(x.reshape(x.shape[0], -1))


# Table 1 of "Rethinking the Inception architecture" as torchvision builds it: (name, block, arguments).
INCEPTION_V3 = [
    ("Mixed_5b", InceptionA, (192, 32)), ("Mixed_5c", InceptionA, (256, 64)), ("Mixed_5d", InceptionA, (288, 64)),
    ("Mixed_6a", InceptionB, (288,)),
    ("Mixed_6b", InceptionC, (768, 128)), ("Mixed_6c", InceptionC, (768, 160)),
    ("Mixed_6d", InceptionC, (768, 160)), ("Mixed_6e", InceptionC, (768, 192)),
    ("AuxLogits", InceptionAux, (768,)),
    ("Mixed_7a", InceptionD, (768,)), ("Mixed_7b", InceptionE, (1280,)), ("Mixed_7c", InceptionE, (2048,)),
]


class Inception3(nn.Module):
    """torchvision's ``Inception3``: stem, the blocks of ``INCEPTION_V3``, pooling, dropout 0.5, classifier."""

    aux_weight = 0.4

    def __init__(self, num_classes=1000, in_channels=3, aux_logits=True, dropout=0.5):
        super().__init__()
        self.aux_logits = aux_logits
        self.Conv2d_1a_3x3 = BasicConv2d(in_channels, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.stages = []
        for name, block, args in INCEPTION_V3:
            if block is InceptionAux:
                self.AuxLogits = InceptionAux(*args, num_classes) if aux_logits else None
                continue
            setattr(self, name, block(*args))
            self.stages.append(name)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2048, num_classes)
        _init_trunc_normal(self)

    def forward(self, x):
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2"):
            x = getattr(self, name)(x)
        aux = None
        for name in self.stages:
            x = getattr(self, name)(x)
            if name == "Mixed_6e" and self.AuxLogits is not None and self.training:
                aux = self.AuxLogits(x)
        x = self.avgpool(x)
        x = self.fc(self.dropout(x.reshape(x.shape[0], -1)))
        return (x, aux) if aux is not None else x


@register_model
def inception_v2(num_classes=1000, in_channels=3):
    """BN-Inception (the batch-norm paper's Figure 5), 224x224 input, 11,285,224 parameters."""
    return BNInception(num_classes, in_channels)


@register_model
def inception_v3(num_classes=1000, in_channels=3, aux_logits=True, dropout=0.5):
    """torchvision's Inception-v3, 299x299 input, 27,161,264 parameters (23,834,568 without the aux head)."""
    return Inception3(num_classes, in_channels, aux_logits, dropout)
