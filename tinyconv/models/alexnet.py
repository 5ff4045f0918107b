"""AlexNet (Krizhevsky, Sutskever, Hinton, "ImageNet classification with deep convolutional neural networks", 2012).

``alexnet``: the paper's network (Section 3.5 and Figure 2), 96-256-384-384-256 filters, ReLU, local response
normalisation after the first two convolutions, overlapping 3x3/2 max pooling, two 4096-unit fully connected
layers with dropout 0.5: 62,378,344 parameters.  The paper split every layer over two GPUs, and conv2, conv4
and conv5 only saw the kernel maps on their own GPU; ``groups=2`` reproduces that connectivity as grouped
convolutions (60,965,224 parameters).

LRN (Section 3.3): ``b = a / (k + alpha * sum over n neighbouring maps of a^2)^beta`` with k=2, n=5,
alpha=1e-4, beta=0.75.  ``nn.LocalResponseNorm`` follows PyTorch, which divides alpha by n, so it is given
``alpha * n``.

Initialisation (Section 5): weights from N(0, 0.01^2); biases 1 in conv2, conv4, conv5 and the fully connected
layers ("accelerates the early stages of learning by providing the ReLUs with positive inputs"), 0 elsewhere.

``alexnet_torchvision``: torchvision's ``alexnet`` (the "one weird trick" variant, 64-192-384-256-256 filters,
no LRN, 61,100,840 parameters), with its state-dict keys, so its weights load by name.

Both end in an adaptive average pooling to 6x6 (the identity at 224x224), as torchvision, so smaller images
(down to 63x63) also work.
"""
from .. import nn
from .registry import register_model

# The paper's Figure 2: (out channels, kernel, stride, padding, split over the two GPUs, LRN, max pool after).
PAPER = [
    (96, 11, 4, 2, False, True, True),      # conv1
    (256, 5, 1, 2, True, True, True),       # conv2 (each half sees its own GPU's 48 maps)
    (384, 3, 1, 1, False, False, False),    # conv3 (sees all 256 maps)
    (384, 3, 1, 1, True, False, False),     # conv4
    (256, 3, 1, 1, True, False, True),      # conv5
]
# torchvision's alexnet (Krizhevsky 2014, "One weird trick for parallelizing CNNs", single-GPU widths).
TORCHVISION = [
    (64, 11, 4, 2, False, False, True),
    (192, 5, 1, 2, False, False, True),
    (384, 3, 1, 1, False, False, False),
    (256, 3, 1, 1, False, False, False),
    (256, 3, 1, 1, False, False, True),
]
LRN = dict(size=5, alpha=1e-4 * 5, beta=0.75, k=2.0)  # paper's alpha = 1e-4, times n for PyTorch's convention


class AlexNet(nn.Module):
    """``features`` (convolutions) -> ``avgpool`` (to 6x6) -> ``classifier`` (dropout, 4096, 4096, classes)."""

    def __init__(self, cfg, num_classes=1000, in_channels=3, groups=1, dropout=0.5, paper_init=True):
        super().__init__()
        layers, c = [], in_channels
        for out, k, s, p, split, lrn, pool in cfg:
            layers += [nn.Conv2d(c, out, k, stride=s, padding=p, groups=groups if split else 1), nn.ReLU()]
            if lrn:
                layers.append(nn.LocalResponseNorm(**LRN))
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c * 6 * 6, 4096), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(),
            nn.Linear(4096, num_classes),
        )
        if paper_init:
            convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
            ones = {id(convs[1]), id(convs[3]), id(convs[4])}
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.normal_(m.weight, 0.0, 0.01)
                    nn.init.constant_(m.bias, 1.0 if (id(m) in ones or isinstance(m, nn.Linear)) else 0.0)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.reshape(x.shape[0], -1))


@register_model
def alexnet(num_classes=1000, in_channels=3, groups=1, dropout=0.5):
    """The paper's AlexNet (62,378,344 parameters); ``groups=2`` for the two-GPU connectivity (60,965,224)."""
    return AlexNet(PAPER, num_classes, in_channels, groups, dropout)


@register_model
def alexnet_torchvision(num_classes=1000, in_channels=3, dropout=0.5):
    """torchvision's ``alexnet`` (61,100,840 parameters, PyTorch's default initialisation)."""
    return AlexNet(TORCHVISION, num_classes, in_channels, 1, dropout, paper_init=False)
