"""GoogLeNet / Inception-v1 (Szegedy et al., "Going deeper with convolutions", 2014).

Two versions share the paper's Table 1 (below) and the module layout of torchvision's ``googlenet``:

- ``googlenet``: the paper's network.  Convolutions with bias and ReLU (no batch norm), local response
  normalisation after the first max pooling and after the 3x3 convolution, a true 5x5 convolution in the
  third branch, 3x3/2 max pooling between stages, dropout 0.4 before the classifier, and the two auxiliary
  classifiers of Section 5 (1x1 convolution to 128 maps, fully connected 1024, dropout 0.7, classifier).
  LRN, padding, ceil-mode pooling and initialisation follow the BVLC Caffe reproduction (``bvlc_googlenet``):
  LRN with n=5, alpha=1e-4 (Caffe's alpha is already divided by n, like PyTorch's), beta=0.75, k=1; weights
  from Caffe's "xavier" filler U(-sqrt(3/fan_in), sqrt(3/fan_in)), convolution biases 0.2.
  Parameters: 6,998,552 without the auxiliary heads (the paper's table sums to about 6.8M: it counts weights
  only, in units of 1024, and its 2.7K for the first convolution is a misprint for 9.2K), 13,378,280 with them.
- ``googlenet_torchvision``: torchvision's version (13,004,888 parameters with the auxiliary heads, 6,624,904
  without; same state-dict keys): batch norm (eps 0.001) after every bias-free convolution, no LRN, a 3x3
  convolution in the "5x5" branch, a 2x2 fourth max pooling, dropout 0.2, truncated-normal (std 0.01) weights.

In training mode with ``aux_logits=True`` the forward returns ``(logits, aux2, aux1)`` (torchvision's order);
the paper adds the auxiliary losses with weight 0.3 each: ``loss = ce(logits) + 0.3 * (ce(aux1) + ce(aux2))``
(``model.aux_weight``).  In evaluation mode it returns the logits only.  The auxiliary heads average-pool
their input to 4x4 (the paper's 5x5/3 pooling at 224x224), so smaller images work too.
"""
from .. import functional as F
from .. import nn
from .registry import register_model

# Table 1 of the paper: name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj; 'M' = 3x3/2 max pooling
# ('M4' the pooling before stage 5, which torchvision makes 2x2/2).
INCEPTION = [
    ("inception3a", 64, 96, 128, 16, 32, 32),
    ("inception3b", 128, 128, 192, 32, 96, 64),
    "M",
    ("inception4a", 192, 96, 208, 16, 48, 64),
    ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64),
    ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128),
    "M4",
    ("inception5a", 256, 160, 320, 32, 128, 128),
    ("inception5b", 384, 192, 384, 48, 128, 128),
]
AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}  # Section 5: heads on the outputs of 4a and 4d
PAPER = dict(batch_norm=False, five=5, lrn=True, pool4=3, dropout=0.4)
TORCHVISION = dict(batch_norm=True, five=3, lrn=False, pool4=2, dropout=0.2)


class BasicConv2d(nn.Module):
    """Convolution, then batch norm (eps 0.001, the convolution without bias) or nothing, then ReLU."""

    def __init__(self, in_channels, out_channels, batch_norm=True, **conv):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=not batch_norm, **conv)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001) if batch_norm else None
        self.relu = nn.ReLU()

    def forward(self, x):  # nn.conv_norm_activation(conv, bn, relu, x) is relu(bn(conv(x))), fused in evaluation
        return nn.conv_norm_activation(self.conv, self.bn, self.relu, x) if self.bn is not None \
            else self.relu(self.conv(x))


class Inception(nn.Module):
    """Four parallel branches concatenated along channels: 1x1 | 1x1->3x3 | 1x1->5x5 | 3x3 max pool->1x1."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, batch_norm=True, five=5):
        super().__init__()
        conv = lambda i, o, **kw: BasicConv2d(i, o, batch_norm, **kw)  # noqa: E731
        self.branch1 = conv(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(conv(in_channels, ch3x3red, kernel_size=1),
                                     conv(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(conv(in_channels, ch5x5red, kernel_size=1),
                                     conv(ch5x5red, ch5x5, kernel_size=five, padding=five // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     conv(in_channels, pool_proj, kernel_size=1))

    def forward(self, x):
        return F.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 average pooling, 1x1 conv to 128, FC 1024 + ReLU, dropout 0.7, FC classes."""

    def __init__(self, in_channels, num_classes, batch_norm=True):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = BasicConv2d(in_channels, 128, batch_norm, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.conv(self.pool(x))
        x = self.dropout(self.relu(self.fc1(x.reshape(x.shape[0], -1))))
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """The stem, the inception stages of ``INCEPTION``, global average pooling, dropout and the classifier."""

    aux_weight = 0.3

    def __init__(self, cfg, num_classes=1000, in_channels=3, aux_logits=True):
        super().__init__()
        bn = cfg["batch_norm"]
        self.aux_logits = aux_logits
        pool = lambda k=3: nn.MaxPool2d(k, stride=2, ceil_mode=True)  # noqa: E731
        lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if cfg["lrn"] else None  # noqa: E731
        self.conv1 = BasicConv2d(in_channels, 64, bn, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = pool()
        self.lrn1 = lrn()
        self.conv2 = BasicConv2d(64, 64, bn, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, bn, kernel_size=3, padding=1)
        self.lrn2 = lrn()
        self.maxpool2 = pool()
        self.stages, c, n_pool, aux_in = [], 192, 3, {}
        for row in INCEPTION:
            if isinstance(row, str):
                name, layer = f"maxpool{n_pool}", pool(cfg["pool4"] if row == "M4" else 3)
                n_pool += 1
            else:
                name, layer = row[0], Inception(c, *row[1:], batch_norm=bn, five=cfg["five"])
                c = row[1] + row[3] + row[5] + row[6]
            setattr(self, name, layer)
            self.stages.append(name)
            if name in AUX_AFTER:
                aux_in[AUX_AFTER[name]] = c
        if aux_logits:
            self.aux1 = InceptionAux(aux_in["aux1"], num_classes, bn)
            self.aux2 = InceptionAux(aux_in["aux2"], num_classes, bn)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(cfg["dropout"])
        self.fc = nn.Linear(c, num_classes)
        self._init(bn)

    def _init(self, torchvision):
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if torchvision:
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                else:  # Caffe's "xavier" filler: U(-sqrt(3 / fan_in), sqrt(3 / fan_in))
                    nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.2 if (isinstance(m, nn.Conv2d) and not torchvision) else 0.0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.maxpool1(self.conv1(x))
        x = self.lrn1(x) if self.lrn1 is not None else x
        x = self.conv3(self.conv2(x))
        x = self.maxpool2(self.lrn2(x) if self.lrn2 is not None else x)
        aux = {}
        for name in self.stages:
            x = getattr(self, name)(x)
            if self.aux_logits and self.training and name in AUX_AFTER:
                aux[AUX_AFTER[name]] = getattr(self, AUX_AFTER[name])(x)
        x = self.avgpool(x)
        x = self.fc(self.dropout(x.reshape(x.shape[0], -1)))
        if aux:
            return x, aux["aux2"], aux["aux1"]
        return x


@register_model
def googlenet(num_classes=1000, in_channels=3, aux_logits=True):
    """The paper's GoogLeNet (LRN, true 5x5, no batch norm); 6,998,552 parameters without the aux heads."""
    return GoogLeNet(PAPER, num_classes, in_channels, aux_logits)


@register_model
def googlenet_torchvision(num_classes=1000, in_channels=3, aux_logits=True):
    """torchvision's GoogLeNet (batch norm); 13,004,888 parameters with the aux heads, torchvision's keys."""
    return GoogLeNet(TORCHVISION, num_classes, in_channels, aux_logits)
