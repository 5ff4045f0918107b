"""EfficientNet (Tan & Le, "EfficientNet: rethinking model scaling for convolutional neural networks", 2019) and
EfficientNetV2-S (Tan & Le, "EfficientNetV2: smaller models and faster training", 2021).

B0 is a stack of MBConv blocks (MobileNet v2's inverted residual with squeeze-and-excitation and SiLU).  B1-B7
are B0 scaled by *compound scaling* (lecture 001): with one coefficient ``phi``, depth ``d = alpha^phi``, width
``w = beta^phi``, resolution ``r = gamma^phi``, ``alpha = 1.2, beta = 1.1, gamma = 1.15`` found by grid search
under ``alpha * beta^2 * gamma^2 ~ 2`` (each step of ``phi`` about doubles the FLOPs).  Filters are scaled by
``w`` and rounded to multiples of 8 (never more than 10% down), repeats by ``d`` and rounded up.
``compound_scaled(phi)`` builds that network for any ``phi``; the released B1-B7 use rounded coefficients
(``COEFFICIENTS``, torchvision's and the reference code's table), which ``efficientnet_b1`` ... build.

Stochastic depth: block ``i`` of ``n`` drops its residual branch with probability ``0.2 * i / n`` (torchvision).
V2 puts *fused* MBConv blocks (expansion by a full 3x3, no depthwise, no SE) in the early, high-resolution stages.
Layout, keys and initialisation are torchvision's.  Each model's default input side is ``model.resolution``
(also ``RESOLUTION[name]``).
"""
import math

from .. import nn
from .mobilenet import ConvNormActivation, make_divisible
from .registry import register_model

# Table 1 of the EfficientNet paper (stages 2-8; stage 1 is the 3x3/2 stem with 32 filters, stage 9 the 1x1 to
# 1280 + pooling + FC): block kind, expansion ratio, kernel, stride of the first repeat, input channels,
# output channels, repeats.
B0_STAGES = [
    ("MBConv", 1, 3, 1, 32, 16, 1),
    ("MBConv", 6, 3, 2, 16, 24, 2),
    ("MBConv", 6, 5, 2, 24, 40, 2),
    ("MBConv", 6, 3, 2, 40, 80, 3),
    ("MBConv", 6, 5, 1, 80, 112, 3),
    ("MBConv", 6, 5, 2, 112, 192, 4),
    ("MBConv", 6, 3, 1, 192, 320, 1),
]

# EfficientNetV2-S, Table 4 of the V2 paper (stages 1-6), in the same columns; the head goes to 1280.
V2_S_STAGES = [
    ("FusedMBConv", 1, 3, 1, 24, 24, 2),
    ("FusedMBConv", 4, 3, 2, 24, 48, 4),
    ("FusedMBConv", 4, 3, 2, 48, 64, 4),
    ("MBConv", 4, 3, 2, 64, 128, 6),
    ("MBConv", 6, 3, 1, 128, 160, 9),
    ("MBConv", 6, 3, 2, 160, 256, 15),
]

# The released coefficients (width, depth, resolution, dropout) of B0-B7, from the reference implementation.
COEFFICIENTS = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2), "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3), "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4), "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5), "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}
RESOLUTION = {name: c[2] for name, c in COEFFICIENTS.items()}
RESOLUTION["efficientnet_v2_s"] = 384
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15   # the compound-scaling constants of the paper (section 3.3)


def scale_stages(stages, width_mult=1.0, depth_mult=1.0):
    """Scale a stage table: channels ``make_divisible(c * width_mult, 8)``, repeats ``ceil(n * depth_mult)``."""
    return [(kind, t, k, s, make_divisible(cin * width_mult), make_divisible(cout * width_mult),
             int(math.ceil(n * depth_mult))) for kind, t, k, s, cin, cout, n in stages]


class SqueezeExcitation(nn.Module):
    """``x * sigmoid(fc2(silu(fc1(mean_hw(x)))))`` with 1x1 convolutions ``fc1``/``fc2`` (torchvision's keys)."""

    def __init__(self, input_channels, squeeze_channels, activation=nn.SiLU):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x):
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class MBConv(nn.Module):
    """Expand 1x1 (SiLU; omitted when ``t == 1``) -> depthwise kxk (stride, SiLU) -> SE (squeeze to
    ``inp / 4``) -> linear 1x1 projection; the residual (with stochastic depth) where the shapes agree."""

    def __init__(self, inp, out, expand_ratio, kernel, stride, sd_prob, norm_layer):
        super().__init__()
        hidden = make_divisible(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == out
        act = nn.SiLU
        layers = [] if hidden == inp else [ConvNormActivation(inp, hidden, 1, norm_layer=norm_layer,
                                                              activation_layer=act)]
        layers += [ConvNormActivation(hidden, hidden, kernel, stride, groups=hidden, norm_layer=norm_layer,
                                      activation_layer=act),
                   SqueezeExcitation(hidden, max(1, inp // 4)),
                   ConvNormActivation(hidden, out, 1, norm_layer=norm_layer, activation_layer=None)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = nn.StochasticDepth(sd_prob, "row")
        self.out_channels = out

    def forward(self, x):
        y = self.block(x)
        return x + self.stochastic_depth(y) if self.use_res_connect else y


class FusedMBConv(nn.Module):
    """EfficientNetV2's fused block: a full kxk convolution expands (stride, SiLU), a linear 1x1 projects
    (a single kxk when ``t == 1``); no SE; residual with stochastic depth where the shapes agree."""

    def __init__(self, inp, out, expand_ratio, kernel, stride, sd_prob, norm_layer):
        super().__init__()
        hidden = make_divisible(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == out
        if hidden != inp:
            layers = [ConvNormActivation(inp, hidden, kernel, stride, norm_layer=norm_layer, activation_layer=nn.SiLU),
                      ConvNormActivation(hidden, out, 1, norm_layer=norm_layer, activation_layer=None)]
        else:
            layers = [ConvNormActivation(inp, out, kernel, stride, norm_layer=norm_layer, activation_layer=nn.SiLU)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = nn.StochasticDepth(sd_prob, "row")
        self.out_channels = out

    def forward(self, x):
        y = self.block(x)
        return x + self.stochastic_depth(y) if self.use_res_connect else y


BLOCKS = {"MBConv": MBConv, "FusedMBConv": FusedMBConv}


class EfficientNet(nn.Module):
    """``features``: stem (3x3/2, SiLU), one ``Sequential`` per row of ``stages`` (a loop over the table),
    1x1 head convolution (SiLU) to ``last_channel`` (default 4x the last stage); global average pooling;
    ``classifier`` (dropout, linear).

    stages: rows ``(kind, t, k, stride, in, out, repeats)``, already scaled; stochastic_depth_prob: the drop
    probability reached by the last block (block ``i`` of ``n``: ``p * i / n``); norm_eps, norm_momentum:
    of every batch norm (B5-B7 and V2 use 1e-3, B5-B7 momentum 0.01); resolution: the default input side.
    """

    def __init__(self, stages, dropout, num_classes=1000, in_channels=3, stochastic_depth_prob=0.2,
                 last_channel=None, norm_eps=1e-5, norm_momentum=0.1, resolution=224):
        super().__init__()
        self.resolution = resolution

        def norm_layer(c):
            return nn.BatchNorm2d(c, eps=norm_eps, momentum=norm_momentum)

        layers = [ConvNormActivation(in_channels, stages[0][4], 3, 2, norm_layer=norm_layer,
                                     activation_layer=nn.SiLU)]
        total, block_id = sum(row[6] for row in stages), 0
        for kind, t, k, s, cin, cout, n in stages:
            stage = []
            for i in range(n):
                sd_prob = stochastic_depth_prob * block_id / total
                stage.append(BLOCKS[kind](cin if i == 0 else cout, cout, t, k, s if i == 0 else 1, sd_prob,
                                          norm_layer))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        c = stages[-1][5]
        last_channel = 4 * c if last_channel is None else last_channel
        layers.append(ConvNormActivation(c, last_channel, 1, norm_layer=norm_layer, activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                r = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -r, r)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.reshape(x.shape[0], -1))


def efficientnet(width_mult, depth_mult, dropout, resolution=224, **kw):
    """B0's table scaled by ``width_mult`` and ``depth_mult`` (and ``resolution`` recorded as the default input)."""
    return EfficientNet(scale_stages(B0_STAGES, width_mult, depth_mult), dropout, resolution=resolution, **kw)


def compound_coefficients(phi, alpha=ALPHA, beta=BETA, gamma=GAMMA, base_resolution=224):
    """The compound-scaling rule: ``(width beta^phi, depth alpha^phi, resolution round(224 gamma^phi))``."""
    return beta ** phi, alpha ** phi, int(round(base_resolution * gamma ** phi))


def compound_scaled(phi, dropout=0.2, **kw):
    """EfficientNet scaled from B0 by the rule itself, for any ``phi`` (a teaching aid: the released B1-B7 round
    the coefficients, see ``COEFFICIENTS``); ``model.resolution`` is its input side."""
    width, depth, resolution = compound_coefficients(phi)
    return efficientnet(width, depth, dropout, resolution, **kw)


def _released(name, **kw):
    width, depth, resolution, dropout = COEFFICIENTS[name]
    if width >= 1.6:  # B5-B7: torchvision's batch norm for the ported TensorFlow weights
        kw = dict(dict(norm_eps=1e-3, norm_momentum=0.01), **kw)
    return efficientnet(width, depth, kw.pop("dropout", dropout), resolution, **kw)


@register_model
def efficientnet_b0(**kw):
    """EfficientNet-B0 (Table 1), 5.3M parameters, 224x224."""
    return _released("efficientnet_b0", **kw)


@register_model
def efficientnet_b1(**kw):
    """EfficientNet-B1 (width 1.0, depth 1.1, 240x240)."""
    return _released("efficientnet_b1", **kw)


@register_model
def efficientnet_b2(**kw):
    """EfficientNet-B2 (width 1.1, depth 1.2, 260x260)."""
    return _released("efficientnet_b2", **kw)


@register_model
def efficientnet_b3(**kw):
    """EfficientNet-B3 (width 1.2, depth 1.4, 300x300)."""
    return _released("efficientnet_b3", **kw)


@register_model
def efficientnet_b4(**kw):
    """EfficientNet-B4 (width 1.4, depth 1.8, 380x380)."""
    return _released("efficientnet_b4", **kw)


@register_model
def efficientnet_b5(**kw):
    """EfficientNet-B5 (width 1.6, depth 2.2, 456x456)."""
    return _released("efficientnet_b5", **kw)


@register_model
def efficientnet_b6(**kw):
    """EfficientNet-B6 (width 1.8, depth 2.6, 528x528)."""
    return _released("efficientnet_b6", **kw)


@register_model
def efficientnet_b7(**kw):
    """EfficientNet-B7 (width 2.0, depth 3.1, 600x600), 66.3M parameters."""
    return _released("efficientnet_b7", **kw)


@register_model
def efficientnet_v2_s(**kw):
    """EfficientNetV2-S (fused MBConv in stages 1-3), 21.5M parameters, 384x384."""
    kw = dict(dict(dropout=0.2, last_channel=1280, norm_eps=1e-3, resolution=384), **kw)
    return EfficientNet(V2_S_STAGES, **kw)
