"""MobileNet v1 (Howard et al., "MobileNets: efficient convolutional neural networks for mobile vision
applications", 2017) and MobileNet v2 (Sandler et al., "MobileNetV2: inverted residuals and linear bottlenecks",
2018).

v1 factorises each 3x3 convolution into a depthwise 3x3 (one filter per channel, ``groups = C``) and a pointwise
1x1 that mixes the channels: ``9 C + C K`` weights instead of ``9 C K``.  The width multiplier ``alpha`` thins
every layer (1.0, 0.75, 0.5, 0.25 in the paper).  v1 at width 1.0 has 4,231,976 parameters (timm's
``mobilenetv1_100``, Keras's MobileNet: batch norm after every convolution, no convolution biases).

v2's block, the inverted residual, expands a thin input ``t`` times with a 1x1 (ReLU6), filters it depthwise
(ReLU6), and projects it back with a *linear* 1x1 (no activation: ReLU in a thin space destroys information);
the residual connects the thin ends where the shapes agree.  Layout, keys and initialisation are torchvision's
(``mobilenet_v2``, 3,504,872 parameters).  Channel counts are rounded to multiples of 8 (``make_divisible``).
"""
from .. import nn
from .registry import register_model

# MobileNet v1, Table 1 of the paper: after the 3x3/2 stem with 32 filters, depthwise-separable layers
# (output channels, stride of the depthwise 3x3).
V1_LAYERS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
             (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

# MobileNet v2, Table 2 of the paper: expansion t, output channels c, repeats n, stride s of the first repeat.
V2_SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
              [6, 320, 1, 1]]


def make_divisible(v, divisor=8, min_value=None):
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``min_value``), never more than 10% down
    (the TensorFlow reference code's rule, used by torchvision's MobileNet and EfficientNet)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvNormActivation(nn.Sequential):
    """``Conv2d`` (no bias, "same" padding for odd kernels) -> ``norm_layer`` -> activation (omitted when
    ``activation_layer`` is None): torchvision's ``Conv2dNormActivation``, keys ``0`` (conv), ``1``, ``2``."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, bias=None):
        padding = (kernel_size - 1) // 2 if padding is None else padding
        bias = norm_layer is None if bias is None else bias
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer())
        super().__init__(*layers)
        self.out_channels = out_channels

    def forward(self, x):  # nn.conv_norm_activation(conv, norm, act, x): act(norm(conv(x))), fused in evaluation
        if len(self) == 3:
            return nn.conv_norm_activation(self[0], self[1], self[2], x)
        if len(self) == 2 and isinstance(self[1], nn.BatchNorm2d):
            return nn.conv_norm_activation(self[0], self[1], None, x)
        return super().forward(x)


class DepthwiseSeparable(nn.Sequential):
    """MobileNet v1's layer: depthwise 3x3 (stride), BN, ReLU, then pointwise 1x1, BN, ReLU."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__(ConvNormActivation(in_channels, in_channels, 3, stride, groups=in_channels),
                         ConvNormActivation(in_channels, out_channels, 1))


class MobileNetV1(nn.Module):
    """``features`` (stem + the 13 depthwise-separable layers of ``V1_LAYERS``), global average pooling,
    ``classifier`` (dropout, linear).  Initialisation: convolutions Kaiming-normal (fan_out), linear
    N(0, 0.01^2), as torchvision's MobileNets."""

    def __init__(self, num_classes=1000, in_channels=3, width_mult=1.0, dropout=0.0):
        super().__init__()
        c = make_divisible(32 * width_mult)
        layers = [ConvNormActivation(in_channels, c, 3, stride=2)]
        for out, stride in V1_LAYERS:
            layers.append(DepthwiseSeparable(c, make_divisible(out * width_mult), stride))
            c = make_divisible(out * width_mult)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))
        _init_mobilenet(self)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.reshape(x.shape[0], -1))


class LinearBottleneck(nn.Sequential):
    """InvertedResidual's ``conv``: its blocks, then the linear projection (a 1x1 convolution and its batch norm,
    the last two modules), which ``nn.conv_norm_activation`` fuses in evaluation; torchvision's keys."""

    def forward(self, x):
        *blocks, project, norm = self
        for block in blocks:
            x = block(x)
        return nn.conv_norm_activation(project, norm, None, x)


class InvertedResidual(nn.Module):
    """``x + project(depthwise(expand(x)))`` (the residual only when ``stride == 1`` and ``inp == oup``);
    ``expand`` is omitted when ``expand_ratio == 1``; the projection is linear (BN, no activation)."""

    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.stride, self.use_res_connect = stride, stride == 1 and inp == oup
        layers = [] if expand_ratio == 1 else [ConvNormActivation(inp, hidden, 1, activation_layer=nn.ReLU6)]
        layers += [ConvNormActivation(hidden, hidden, 3, stride, groups=hidden, activation_layer=nn.ReLU6),
                   nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = LinearBottleneck(*layers)
        self.out_channels = oup

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """Stem (3x3/2, 32), the inverted residuals of ``V2_SETTING``, 1x1 to 1280 channels, global average
    pooling, ``classifier`` (dropout 0.2, linear); widths times ``width_mult`` rounded to multiples of 8
    (the last layer never below 1280)."""

    def __init__(self, num_classes=1000, in_channels=3, width_mult=1.0, dropout=0.2, round_nearest=8):
        super().__init__()
        c = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        layers = [ConvNormActivation(in_channels, c, 3, stride=2, activation_layer=nn.ReLU6)]
        for t, out, n, s in V2_SETTING:
            out = make_divisible(out * width_mult, round_nearest)
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        layers.append(ConvNormActivation(c, self.last_channel, 1, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        _init_mobilenet(self)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.reshape(x.shape[0], -1))


def _init_mobilenet(model):
    """torchvision's MobileNet initialisation: conv Kaiming-normal (fan_out), zero bias; BN 1, 0; linear
    N(0, 0.01^2), zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@register_model
def mobilenet_v1(width_mult=1.0, **kw):
    """MobileNet v1 (width 1.0: 4.2M parameters, 0.57 GMACs); keywords: num_classes, in_channels, dropout."""
    return MobileNetV1(width_mult=width_mult, **kw)


@register_model
def mobilenet_v2(width_mult=1.0, **kw):
    """MobileNet v2 (width 1.0: 3.5M parameters, 0.30 GMACs); keywords: num_classes, in_channels, dropout."""
    return MobileNetV2(width_mult=width_mult, **kw)
