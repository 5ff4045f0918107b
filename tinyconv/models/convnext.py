"""ConvNeXt (Liu et al., "A ConvNet for the 2020s", 2022): a ResNet modernised step by step towards a vision
Transformer.

The stem patchifies (4x4 convolution, stride 4); each block is a 7x7 depthwise convolution, a layer norm over the
channels, and an MLP (linear 4x expansion, GELU, linear back) applied at every pixel, scaled per channel by a
learnable *layer scale* (initialised at 1e-6) and added to the input with stochastic depth (drop rate rising
linearly from 0 to 0.1 over the 18 blocks of ConvNeXt-T).  Between stages a channels-first layer norm and a 2x2
convolution of stride 2 downsample.  Layout, keys and initialisation (truncated normal, std 0.02, zero biases)
are torchvision's (``convnext_tiny``: 28,589,128 parameters).
"""
from .. import creation
from .. import nn
from .registry import register_model

# Table/figure "ConvNeXt-T" of the paper: (channels, blocks) per stage.
TINY = [(96, 3), (192, 3), (384, 9), (768, 3)]


class Permute(nn.Module):
    """Reorder the axes (``(N, C, H, W) -> (N, H, W, C)`` and back around the per-pixel MLP)."""

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x):
        return x.permute(self.dims)


class CNBlock(nn.Module):
    """``x + drop_path(gamma * mlp(ln(dwconv7x7(x))))`` with ``gamma`` (C, 1, 1) the layer scale."""

    def __init__(self, dim, layer_scale, stochastic_depth_prob):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(creation.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = nn.StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, x):
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


class ConvNeXt(nn.Module):
    """``features``: stem (4x4/4 conv, LayerNorm2d), then per stage the blocks and (except after the last) a
    downsampling layer (LayerNorm2d, 2x2/2 conv); global average pooling; ``classifier`` (LayerNorm2d, flatten,
    linear).  Any input of at least 32x32 works."""

    def __init__(self, stages=TINY, num_classes=1000, in_channels=3, stochastic_depth_prob=0.1, layer_scale=1e-6):
        super().__init__()
        c = stages[0][0]
        layers = [nn.Sequential(nn.Conv2d(in_channels, c, kernel_size=4, stride=4), nn.LayerNorm2d(c, eps=1e-6))]
        total, block_id = sum(n for _, n in stages), 0
        for i, (c, n) in enumerate(stages):
            blocks = []
            for _ in range(n):
                blocks.append(CNBlock(c, layer_scale, stochastic_depth_prob * block_id / (total - 1.0)))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
            if i + 1 < len(stages):
                out = stages[i + 1][0]
                layers.append(nn.Sequential(nn.LayerNorm2d(c, eps=1e-6), nn.Conv2d(c, out, kernel_size=2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.LayerNorm2d(c, eps=1e-6), nn.Flatten(1), nn.Linear(c, num_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


@register_model
def convnext_tiny(**kw):
    """ConvNeXt-T (3-3-9-3 blocks, 96-768 channels), 28.6M parameters, 4.5 GMACs."""
    return ConvNeXt(TINY, **kw)
