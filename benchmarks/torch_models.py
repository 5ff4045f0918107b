"""PyTorch twins of the networks the suite times.

The rows of the issue's targets (LeNet-5, ResNet-18, MobileNet v2, VGG-11) are written out here, so those need
only ``torch``; each mirrors the tinyconv model layer for layer (torchvision's layouts; LeNet-5 as in
``tinyconv.models.lenet``).  The larger zoo rows (EfficientNet-B0, DenseNet-121, GoogLeNet, ConvNeXt-T,
ResNet-50) are torchvision's own models: ``TORCHVISION`` maps tinyconv's name to torchvision's, and without
torchvision those rows are skipped.  The suite checks that the parameter shapes agree (``same_parameters``);
with torchvision's weights loaded, tinyconv's models give its outputs (checked when these rows were added).
"""
import torch
from torch import nn


def lenet5(num_classes=10):
    """LeNet-5 for 1x32x32 inputs: tanh, average pooling, C3 connected to all six S2 maps."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2, 2),
        nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(),
        nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes))


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


def resnet18(num_classes=10):
    """ResNet-18 (torchvision's layout: 7x7/2 stem, max pool, basic blocks 2-2-2-2, global pool, fc)."""
    layers, c = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                 nn.MaxPool2d(3, 2, 1)], 64
    for i, planes in enumerate([64, 128, 256, 512]):
        for j in range(2):
            layers.append(BasicBlock(c, planes, 2 if i > 0 and j == 0 else 1))
            c = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


def _conv_bn(inp, oup, k, stride, groups=1, act=True):
    layers = [nn.Conv2d(inp, oup, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(oup)]
    return layers + [nn.ReLU6(inplace=True)] if act else layers


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hidden = inp * t
        layers = [] if t == 1 else _conv_bn(inp, hidden, 1, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden) + _conv_bn(hidden, oup, 1, 1, act=False)
        self.conv = nn.Sequential(*layers)
        self.res = stride == 1 and inp == oup

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


def mobilenet_v2(num_classes=10):
    """MobileNet v2, width 1.0 (the paper's Table 2, torchvision's layout, dropout 0.2)."""
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
               [6, 320, 1, 1]]
    layers, c = _conv_bn(3, 32, 3, 2), 32
    for t, out, n, s in setting:
        for i in range(n):
            layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
            c = out
    layers += _conv_bn(c, 1280, 1, 1)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, num_classes)]
    return nn.Sequential(*layers)


def vgg11(num_classes=10):
    """VGG configuration A with torchvision's head (adaptive pooling to 7x7, 4096-4096-classes, dropout 0.5)."""
    layers, c = [], 3
    for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    layers += [nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(),
               nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
               nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(4096, num_classes)]
    return nn.Sequential(*layers)


MODELS = {"lenet5": lenet5, "resnet18": resnet18, "mobilenet_v2": mobilenet_v2, "vgg11": vgg11}

# tinyconv's name -> (torchvision's builder, its keyword arguments).  tinyconv's ``googlenet`` is the paper's
# network (LRN, true 5x5, no batch norm); torchvision's is tinyconv's ``googlenet_torchvision``.
TORCHVISION = {"efficientnet_b0": ("efficientnet_b0", {}), "densenet121": ("densenet121", {}),
               "googlenet_torchvision": ("googlenet", {"aux_logits": True, "init_weights": True}),
               "convnext_tiny": ("convnext_tiny", {}), "resnet50": ("resnet50", {})}


def has_model(name):
    """Whether a twin of tinyconv's ``name`` can be built here (torchvision's need torchvision)."""
    if name in MODELS:
        return True
    if name not in TORCHVISION:
        return False
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True


def get_model(name, num_classes=10):
    """The PyTorch twin of tinyconv's ``name``."""
    if name in MODELS:
        return MODELS[name](num_classes)
    import torchvision
    builder, kwargs = TORCHVISION[name]
    return getattr(torchvision.models, builder)(num_classes=num_classes, **kwargs)


def parameter_shapes(model):
    """The sorted shapes of a model's parameters (the same expression for tinyconv and PyTorch)."""
    return sorted(tuple(p.shape) for p in model.parameters())


def num_parameters(model):
    return sum(p.numel() for p in model.parameters())


def threads():
    return torch.get_num_threads()
