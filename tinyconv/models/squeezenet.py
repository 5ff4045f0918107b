"""SqueezeNet (Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model
size", 2016).

The fire module squeezes its input with 1x1 filters (``s`` of them, fewer than its output), then expands with
``e1`` 1x1 and ``e3`` 3x3 filters side by side, concatenated along the channels.  No fully connected layer: a 1x1
convolution to the classes and global average pooling end the network.  Version 1.1 (the SqueezeNet repository)
starts with a 3x3/2 convolution of 64 filters and pools earlier: 2.4x fewer MACs for the same accuracy.
Layout, keys and initialisation are torchvision's (``squeezenet1_0``: 1,248,424 parameters, ``squeezenet1_1``:
1,235,496); the max poolings use ``ceil_mode`` as the original Caffe model.
"""
from .. import functions as F
from .. import nn
from .registry import register_model

# Table 1 of the paper (v1.0) and the v1.1 release: after the stem, 'M' is a 3x3/2 max pooling,
# a triple (s1x1, e1x1, e3x3) a fire module.
CFGS = {
    "1_0": dict(stem=(96, 7), layers=["M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M", (32, 128, 128),
                                      (48, 192, 192), (48, 192, 192), (64, 256, 256), "M", (64, 256, 256)]),
    "1_1": dict(stem=(64, 3), layers=["M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
                                      (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]),
}


class Fire(nn.Module):
    """``relu(squeeze 1x1)`` then ``cat(relu(expand 1x1), relu(expand 3x3))``: ``e1 + e3`` output channels."""

    def __init__(self, inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes):
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return F.cat([self.expand1x1_activation(self.expand1x1(x)),
                      self.expand3x3_activation(self.expand3x3(x))], dim=1)


class SqueezeNet(nn.Module):
    """``features`` (stem conv/2 + ReLU, then the table), ``classifier`` (dropout 0.5, 1x1 conv to the classes,
    ReLU, global average pooling).  Initialisation: the final convolution N(0, 0.01^2), the others Kaiming
    uniform (ReLU gain), zero biases."""

    def __init__(self, version="1_0", num_classes=1000, in_channels=3, dropout=0.5):
        super().__init__()
        cfg = CFGS[version]
        c, k = cfg["stem"]
        layers = [nn.Conv2d(in_channels, c, kernel_size=k, stride=2), nn.ReLU(inplace=True)]
        for v in cfg["layers"]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
            else:
                layers.append(Fire(c, *v))
                c = v[1] + v[2]
        self.features = nn.Sequential(*layers)
        final_conv = nn.Conv2d(c, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), final_conv, nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.classifier(self.features(x))
        return x.reshape(x.shape[0], -1)


@register_model
def squeezenet1_0(**kw):
    """SqueezeNet 1.0 (the paper's Table 1), 1.25M parameters, 0.82 GMACs."""
    return SqueezeNet("1_0", **kw)


@register_model
def squeezenet1_1(**kw):
    """SqueezeNet 1.1, 1.24M parameters, 0.35 GMACs."""
    return SqueezeNet("1_1", **kw)
