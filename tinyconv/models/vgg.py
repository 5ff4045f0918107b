"""VGG (Simonyan, Zisserman, "Very deep convolutional networks for large-scale image recognition", 2014).

The configurations of the paper's Table 1, written as torchvision writes them: an integer is a 3x3 convolution
(padding 1) with that many filters followed by ReLU, ``'M'`` a 2x2/2 max pooling, ``'LRN'`` AlexNet's local
response normalisation (configuration A-LRN), ``(C, 1)`` a 1x1 convolution (configuration C, "conv1-C").

=======  ==============  ================  ===========
factory  configuration   weight layers     parameters
=======  ==============  ================  ===========
vgg11    A               11                132,863,336
vgg11_lrn  A-LRN         11                132,863,336
vgg13    B               13                133,047,848
vgg16_c  C               16 (three 1x1)    133,638,952
vgg16    D               16                138,357,544
vgg19    E               19                143,667,240
=======  ==============  ================  ===========

``*_bn`` variants put a batch norm after every convolution (torchvision's ``vgg11_bn``, ...).  The module layout
(``features``, ``avgpool`` to 7x7, ``classifier``) and its state-dict keys are torchvision's.  Initialisation as
torchvision: convolutions Kaiming-normal (fan_out, ReLU) with zero bias, linear layers N(0, 0.01^2), batch norm
weight 1 and bias 0.  Any input of at least 32x32 works (five 2x2 poolings, then the adaptive pooling).
"""
from .. import nn
from .registry import register_model

# Table 1 of the paper (columns A, A-LRN, B, C, D, E).
CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
LRN = dict(size=5, alpha=1e-4 * 5, beta=0.75, k=2.0)  # AlexNet's LRN (k=2, n=5, alpha=1e-4; PyTorch divides by n)


def make_layers(cfg, in_channels=3, batch_norm=False):
    """The ``features`` Sequential of one configuration column."""
    layers, c = [], in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif v == "LRN":
            layers.append(nn.LocalResponseNorm(**LRN))
        else:
            out, k = v if isinstance(v, tuple) else (v, 3)
            layers.append(nn.Conv2d(c, out, kernel_size=k, padding=k // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU())
            c = out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features`` -> ``avgpool`` (to 7x7) -> ``classifier`` (4096, 4096, classes, dropout after each hidden)."""

    def __init__(self, features, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.reshape(x.shape[0], -1))


def _vgg(cfg, batch_norm, num_classes=1000, in_channels=3, dropout=0.5):
    return VGG(make_layers(CFGS[cfg], in_channels, batch_norm), num_classes, dropout)


@register_model
def vgg11(**kw):
    """VGG configuration A (11 weight layers); keywords: num_classes, in_channels, dropout."""
    return _vgg("A", False, **kw)


@register_model
def vgg11_bn(**kw):
    """VGG configuration A with batch norm; keywords: num_classes, in_channels, dropout."""
    return _vgg("A", True, **kw)


@register_model
def vgg11_lrn(**kw):
    """VGG configuration A-LRN (LRN after the first layer); keywords: num_classes, in_channels, dropout."""
    return _vgg("A-LRN", False, **kw)


@register_model
def vgg11_lrn_bn(**kw):
    """VGG configuration A-LRN with batch norm; keywords: num_classes, in_channels, dropout."""
    return _vgg("A-LRN", True, **kw)


@register_model
def vgg13(**kw):
    """VGG configuration B (13 weight layers); keywords: num_classes, in_channels, dropout."""
    return _vgg("B", False, **kw)


@register_model
def vgg13_bn(**kw):
    """VGG configuration B with batch norm; keywords: num_classes, in_channels, dropout."""
    return _vgg("B", True, **kw)


@register_model
def vgg16_c(**kw):
    """VGG configuration C (16 weight layers, three of them 1x1); keywords: num_classes, in_channels, dropout."""
    return _vgg("C", False, **kw)


@register_model
def vgg16_c_bn(**kw):
    """VGG configuration C with batch norm; keywords: num_classes, in_channels, dropout."""
    return _vgg("C", True, **kw)


@register_model
def vgg16(**kw):
    """VGG configuration D (16 weight layers); keywords: num_classes, in_channels, dropout."""
    return _vgg("D", False, **kw)


@register_model
def vgg16_bn(**kw):
    """VGG configuration D with batch norm; keywords: num_classes, in_channels, dropout."""
    return _vgg("D", True, **kw)


@register_model
def vgg19(**kw):
    """VGG configuration E (19 weight layers); keywords: num_classes, in_channels, dropout."""
    return _vgg("E", False, **kw)


@register_model
def vgg19_bn(**kw):
    """VGG configuration E with batch norm; keywords: num_classes, in_channels, dropout."""
    return _vgg("E", True, **kw)
