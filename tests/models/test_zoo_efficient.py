"""The efficient zoo: MobileNet v1/v2, ShuffleNet v2, SqueezeNet 1.0/1.1, EfficientNet-B0..B7 and V2-S,
ConvNeXt-T.

Parameter counts and MACs against the reference table, state-dict keys and shapes against torchvision's, the
compound-scaling rule, forward and training on small inputs, initialisation.
"""
import math

import numpy as np
import pytest

import tinyconv
from tinyconv import models, nn
from tinyconv.models import efficientnet as eff
from zoo_helpers import (REFERENCE, build, check_forward, check_training, count, reference_macs,
                         state_dict_shapes, torchvision_keys)

EFFICIENTNETS = [f"efficientnet_b{i}" for i in range(8)] + ["efficientnet_v2_s"]
# tinyconv name -> reference-table name
EFFICIENT = dict({n: n for n in ["mobilenet_v2", "shufflenet_v2_x1_0", "squeezenet1_0", "squeezenet1_1",
                                 "convnext_tiny"] + EFFICIENTNETS}, mobilenet_v1="mobilenetv1_100")
TORCHVISION = [n for n in EFFICIENT if n != "mobilenet_v1"]


def test_all_registered():
    assert set(EFFICIENT) <= set(models.list_models())


@pytest.mark.parametrize("name", sorted(EFFICIENT))
def test_parameters_equal_reference_table(name):
    assert count(build(name)) == int(REFERENCE[EFFICIENT[name]]["params"])


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_state_dict_keys_equal_torchvision(name):
    expected = torchvision_keys(name)
    got = state_dict_shapes(build(name))
    assert list(got) == list(expected)
    assert got == expected


# ConvNeXt's MACs are mostly in its per-pixel linear layers, whose products summary computes: slow at 224x224
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "convnext_tiny" else n
                                  for n in sorted(EFFICIENT)])
def test_macs_match_reference_table(name):
    macs, ref = reference_macs(build(name), EFFICIENT[name])
    assert abs(macs / ref - 1) < 0.01


# -- MobileNet -----------------------------------------------------------------------------------------------

def _separable_count(alpha, classes=1000):
    """MobileNet v1's parameters from the paper's Table 1, by hand: BN (2 per channel) after every conv."""
    c = int(32 * alpha)
    n = 3 * 9 * c + 2 * c
    for out, _ in models.mobilenet.V1_LAYERS:
        k = int(out * alpha)
        n += 9 * c + 2 * c + c * k + 2 * k
        c = k
    return n + c * classes + classes


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.5, 0.25])
def test_mobilenet_v1_width_multiplier(alpha):
    model = build("mobilenet_v1", width_mult=alpha)
    assert count(model) == _separable_count(alpha)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    depthwise = [m for m in convs if m.groups > 1]
    assert len(depthwise) == 13 and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert convs[-1].out_channels == int(1024 * alpha)


def test_mobilenet_v2_inverted_residuals():
    model = build("mobilenet_v2")
    blocks = [m for m in model.features if isinstance(m, models.mobilenet.InvertedResidual)]
    assert len(blocks) == 17 and sum(b.use_res_connect for b in blocks) == 10
    # linear bottleneck: the projection (last two modules) is a 1x1 convolution and a batch norm, no ReLU6
    assert [type(m).__name__ for m in blocks[3].conv] == ["ConvNormActivation", "ConvNormActivation",
                                                          "Conv2d", "BatchNorm2d"]
    assert isinstance(blocks[3].conv[0][2], nn.ReLU6)
    assert count(build("mobilenet_v2", width_mult=0.5)) < 0.6 * count(model)


# -- EfficientNet --------------------------------------------------------------------------------------------

def test_efficientnet_b0_is_the_papers_table_1():
    model = build("efficientnet_b0")
    stages = model.features[1:-1]
    assert [len(s) for s in stages] == [row[6] for row in eff.B0_STAGES] == [1, 2, 2, 3, 3, 4, 1]
    assert [s[0].out_channels for s in stages] == [16, 24, 40, 80, 112, 192, 320]
    kernels = [s[0].block[-3][0].kernel_size[0] for s in stages]     # the depthwise convolution of each stage
    assert kernels == [3, 3, 5, 3, 5, 5, 3]
    assert model.features[-1].out_channels == 1280 and model.resolution == 224


@pytest.mark.parametrize("name", EFFICIENTNETS[1:8])
def test_released_models_scale_b0(name):
    width, depth, resolution, dropout = eff.COEFFICIENTS[name]
    model = build(name)
    stages = model.features[1:-1]
    # repeats rounded up, filters rounded to multiples of 8 (never more than 10% down)
    assert [len(s) for s in stages] == [math.ceil(row[6] * depth) for row in eff.B0_STAGES]
    for s, row in zip(stages, eff.B0_STAGES):
        c, exact = s[0].out_channels, row[5] * width
        nearest = max(8, int(exact + 4) // 8 * 8)
        assert c == (nearest if nearest >= 0.9 * exact else nearest + 8)
    assert model.resolution == resolution == eff.RESOLUTION[name]
    assert model.classifier[0].p == dropout


def test_compound_scaling_rule():
    # alpha * beta^2 * gamma^2 ~ 2: each step of phi about doubles the FLOPs
    assert abs(eff.ALPHA * eff.BETA ** 2 * eff.GAMMA ** 2 - 2) < 0.1
    assert eff.compound_coefficients(0) == (1.0, 1.0, 224)
    w, d, r = eff.compound_coefficients(1)
    assert (w, d, r) == (pytest.approx(1.1), pytest.approx(1.2), 258)
    macs = []
    for phi in (0, 1, 2):
        with nn.init.skip_init():
            model = eff.compound_scaled(phi)
        macs.append(tinyconv.summary(model, (3, model.resolution, model.resolution), depth=1).total_macs)
    assert count(build("efficientnet_b0")) == count(eff.compound_scaled(0))
    ratios = [b / a for a, b in zip(macs, macs[1:])]   # 2.6 and 1.8: the rounding of small repeats up
    assert all(1.5 < q < 3 for q in ratios), ratios


def test_stochastic_depth_increases_linearly():
    model = build("efficientnet_b0")
    probs = [b.stochastic_depth.p for stage in model.features[1:-1] for b in stage]
    assert probs == pytest.approx([0.2 * i / 16 for i in range(16)])


def test_stochastic_depth_drops_residual_branches_in_training_only():
    model = models.efficientnet_b0(num_classes=10, stochastic_depth_prob=0.99)
    block = model.features[6][3]                       # a residual MBConv with drop probability ~0.9
    assert block.use_res_connect and block.stochastic_depth.p > 0.8
    block.train()
    x = tinyconv.randn(8, 192, 4, 4)
    y = block(x).numpy()
    same = [np.array_equal(y[i], x.numpy()[i]) for i in range(8)]
    assert any(same)                                   # some samples skipped the branch entirely
    block.eval()
    with tinyconv.no_grad():
        assert not np.array_equal(block(x).numpy(), x.numpy())


def test_efficientnet_v2_s_fused_stages():
    model = build("efficientnet_v2_s")
    kinds = [type(s[0]).__name__ for s in model.features[1:-1]]
    assert kinds == ["FusedMBConv"] * 3 + ["MBConv"] * 3
    assert model.resolution == 384


# -- forward and training ------------------------------------------------------------------------------------

FAST = ["mobilenet_v1", "mobilenet_v2", "shufflenet_v1_g3", "shufflenet_v2_x1_0", "squeezenet1_0", "squeezenet1_1",
        "efficientnet_b0", "convnext_tiny"]


@pytest.mark.parametrize("name", FAST)
def test_forward_shape_and_finite(name):
    check_forward(models.get_model(name, num_classes=10), tinyconv.randn(2, 3, 32, 32))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_v2_s", "efficientnet_b3"])
def test_forward_shape_and_finite_large(name):
    check_forward(models.get_model(name, num_classes=10), tinyconv.randn(2, 3, 64, 64))


@pytest.mark.parametrize("name", ["mobilenet_v2", "squeezenet1_1", "shufflenet_v2_x1_0"])
def test_training_lowers_loss(name):
    kw = {"dropout": 0.0} if name != "shufflenet_v2_x1_0" else {}
    check_training(models.get_model(name, num_classes=10, **kw), tinyconv.randn(2, 3, 32, 32), lr=0.002)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v1", "efficientnet_b0", "convnext_tiny"])
def test_training_lowers_loss_large(name):
    kw = {"dropout": 0.0} if name != "convnext_tiny" else {}
    check_training(models.get_model(name, num_classes=10, **kw), tinyconv.randn(2, 3, 64, 64), lr=0.005)


# -- initialisation ------------------------------------------------------------------------------------------

def test_initialisation_as_torchvision():
    m = models.mobilenet_v2()
    w = m.features[5].conv[0][0].weight.numpy()                 # Kaiming normal, fan_out = 192 (1x1)
    assert abs(w.std() / np.sqrt(2 / 192) - 1) < 0.05
    assert abs(m.classifier[1].weight.numpy().std() / 0.01 - 1) < 0.05
    e = models.efficientnet_b0()
    fc = e.classifier[1].weight.numpy()                         # U(-1/sqrt(1000), 1/sqrt(1000))
    assert np.abs(fc).max() <= 1 / np.sqrt(1000) and np.abs(fc).max() > 0.9 / np.sqrt(1000)
    s = models.squeezenet1_0()
    assert abs(s.classifier[1].weight.numpy().std() / 0.01 - 1) < 0.05
    assert all((c.bias.numpy() == 0).all() for c in s.modules() if isinstance(c, nn.Conv2d))
    c = models.convnext_tiny()
    w = c.features[1][0].block[3].weight.numpy()                # truncated normal, std 0.02
    assert abs(w.std() / 0.02 - 1) < 0.05
    assert np.allclose(c.features[1][0].layer_scale.numpy(), 1e-6)


# -- ShuffleNet ----------------------------------------------------------------------------------------------

def test_shufflenet_v1_g3_table_1():
    model = build("shufflenet_v1_g3")
    units = list(model.features)
    assert len(units) == 16 and [u.stride for u in units].count(2) == 3
    pointwise = [m for u in units for m in u.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert [m.groups for m in pointwise].count(1) == 1        # only the first 1x1 (24 input channels)
    assert all(m.groups == 3 for m in pointwise[1:])
    s = tinyconv.summary(model, (3, 224, 224), depth=1)
    shapes = {r["name"]: r["output_shape"] for r in s.rows}
    assert shapes["features"] == (1, 960, 7, 7)
    assert abs(s.total_macs / 140e6 - 1) < 0.03                 # "140 MFLOPs" (Table 1 and 2 of the paper)


def test_shufflenet_v2_unit_splits_and_shuffles():
    from tinyconv.models.shufflenet import InvertedResidual
    unit = InvertedResidual(8, 8, 1)
    unit.eval()
    x = tinyconv.randn(1, 8, 4, 4)
    with tinyconv.no_grad():
        y = unit(x).numpy()
    # the untouched half x[:, :4] lands on the even channels after the shuffle with 2 groups
    assert np.array_equal(y[:, 0::2], x.numpy()[:, :4])


@pytest.mark.parametrize("name", sorted(EFFICIENT) + ["shufflenet_v1_g3"])
def test_in_channels_and_num_classes_options(name):
    model = build(name, num_classes=7, in_channels=1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 1
    assert list(model.parameters())[-1].shape[0] == 7         # the classifier (SqueezeNet: a 1x1 convolution)
