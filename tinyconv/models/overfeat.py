"""OverFeat (Sermanet, Eigen, Zhang, Mathieu, Fergus, LeCun, "OverFeat: integrated recognition, localization
and detection using convolutional networks", 2013): the classification networks of the paper's Tables 1 and 3.

AlexNet-like, without LRN and with non-overlapping max pooling.  ``overfeat_fast`` takes 231x231 images
(145,920,872 parameters), ``overfeat_accurate`` 221x221 (144,656,488).  The paper trains with dropout 0.5 on
the fully connected layers 6 and 7 and initialises every weight from N(0, 0.01^2) (biases 0).

The fully connected layers are ordinary ``Linear`` layers on the last feature map (6x6x1024 for the fast model,
5x5x1024 for the accurate one), preceded by an adaptive average pooling to that size so reduced-resolution
images work too; at the paper's input size it is the identity.  The paper's multi-scale, sliding-window
evaluation (the classifier applied as 1x1 convolutions over larger maps) is not part of this module.
"""
from .. import nn
from .registry import register_model

# Table 1 (fast model): (out channels, kernel, stride, padding, max pool kernel = stride, or 0 for none).
FAST = dict(
    convs=[(96, 11, 4, 0, 2), (256, 5, 1, 0, 2), (512, 3, 1, 1, 0), (1024, 3, 1, 1, 0), (1024, 3, 1, 1, 2)],
    spatial=6, fcs=[3072, 4096],
)
# Table 3 (accurate model).
ACCURATE = dict(
    convs=[(96, 7, 2, 0, 3), (256, 7, 1, 0, 2), (512, 3, 1, 1, 0), (512, 3, 1, 1, 0), (1024, 3, 1, 1, 0),
           (1024, 3, 1, 1, 3)],
    spatial=5, fcs=[4096, 4096],
)


class OverFeat(nn.Module):
    """``features`` (conv + ReLU, max pool where the table has one) -> ``avgpool`` -> ``classifier``."""

    def __init__(self, cfg, num_classes=1000, in_channels=3, dropout=0.5):
        super().__init__()
        layers, c = [], in_channels
        for out, k, s, p, pool in cfg["convs"]:
            layers += [nn.Conv2d(c, out, k, stride=s, padding=p), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(pool, pool))
            c = out
        self.features = nn.Sequential(*layers)
        s = cfg["spatial"]
        self.avgpool = nn.AdaptiveAvgPool2d((s, s))
        head, width = [], c * s * s
        for units in cfg["fcs"]:
            head += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(dropout)]
            width = units
        head.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*head)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.reshape(x.shape[0], -1))


@register_model
def overfeat_fast(num_classes=1000, in_channels=3, dropout=0.5):
    """OverFeat's fast model (Table 1), 231x231 input, 145,920,872 parameters; inputs of at least 71x71."""
    return OverFeat(FAST, num_classes, in_channels, dropout)


@register_model
def overfeat_accurate(num_classes=1000, in_channels=3, dropout=0.5):
    """OverFeat's accurate model (Table 3), 221x221 input, 144,656,488 parameters; inputs of at least 77x77."""
    return OverFeat(ACCURATE, num_classes, in_channels, dropout)
