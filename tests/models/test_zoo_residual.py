"""The residual zoo: ResNet-18..152, ResNeXt, SE-ResNet-50, DenseNet-121..264.

Parameter counts against the reference table, state-dict keys and shapes against torchvision's, MACs against
the reference table and the ResNet paper's FLOPs row (lecture 002), forward and training on small inputs,
backward through ResNet-152, initialisation, and the dense block's memory behaviour.
"""
import tracemalloc

import numpy as np
import pytest

import tinyconv
from tinyconv import backend, models, nn
from tinyconv.functions.shape import AppendChannels
from tinyconv.models.densenet import _DenseBlock
from zoo_helpers import (REFERENCE, build, check_forward, check_training, count, reference_macs,
                         state_dict_shapes, torchvision_keys)

# tinyconv name -> reference-table name (torchvision's, or timm's for SE-ResNet-50)
RESIDUAL = {"resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50", "resnet101": "resnet101",
            "resnet152": "resnet152", "resnext50_32x4d": "resnext50_32x4d",
            "resnext101_32x8d": "resnext101_32x8d", "resnext101_64x4d": "resnext101_64x4d",
            "se_resnet50": "legacy_seresnet50", "densenet121": "densenet121", "densenet169": "densenet169",
            "densenet201": "densenet201", "densenet264": "densenet264"}
TORCHVISION = [name for name in RESIDUAL if name not in ("se_resnet50", "densenet264")]


def test_all_registered():
    assert set(RESIDUAL) <= set(models.list_models())


@pytest.mark.parametrize("name", sorted(RESIDUAL))
def test_parameters_equal_reference_table(name):
    assert count(build(name)) == int(REFERENCE[RESIDUAL[name]]["params"])


@pytest.mark.parametrize("name", TORCHVISION)
def test_state_dict_keys_equal_torchvision(name):
    expected = torchvision_keys(name)
    got = state_dict_shapes(build(name))
    assert list(got) == list(expected)
    assert got == expected


@pytest.mark.parametrize("name", sorted(RESIDUAL))
def test_macs_match_reference_table(name):
    macs, ref = reference_macs(build(name), RESIDUAL[name])
    assert abs(macs / ref - 1) < 0.01


# The FLOPs row of the ResNet paper's Table 1 (lecture 002): multiply-adds at 224x224 of the paper's network,
# whose bottlenecks stride in the first 1x1 (torchvision's stride in the 3x3 costs 4.1, 7.8, 11.5 G instead).
# ResNet-34's 3.6 is the paper's rounding of 3.66.
PAPER_FLOPS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


@pytest.mark.parametrize("name", sorted(PAPER_FLOPS))
def test_macs_match_the_papers_flops_row(name):
    s = tinyconv.summary(build(name, stride_in_1x1=True), (3, 224, 224), depth=1)
    assert abs(s.total_macs / (PAPER_FLOPS[name] * 1e9) - 1) < 0.02
    assert s.total_params == count(build(name))   # the stride's place changes no parameter


def test_stage_shapes_follow_table_1():
    s = tinyconv.summary(build("resnet50"), (3, 224, 224), depth=1)
    shapes = {r["name"]: r["output_shape"] for r in s.rows}
    assert shapes["maxpool"] == (1, 64, 56, 56)
    assert [shapes[f"layer{i}"] for i in range(1, 5)] == [(1, 256, 56, 56), (1, 512, 28, 28),
                                                          (1, 1024, 14, 14), (1, 2048, 7, 7)]
    assert shapes["fc"] == (1, 1000)


def test_resnext_cardinality_and_width():
    m = build("resnext50_32x4d")
    conv = m.layer1[0].conv2
    assert (conv.groups, conv.in_channels, conv.out_channels) == (32, 128, 128)   # 32 paths of 4 channels
    assert m.layer4[0].conv2.out_channels == 32 * 4 * 8
    m = build("resnext101_64x4d")
    assert (m.layer1[0].conv2.groups, m.layer1[0].conv2.out_channels) == (64, 256)


def test_projection_shortcuts_only_where_shapes_change():
    m = build("resnet34")
    with_projection = [f"{i}.{j}" for i in range(1, 5) for j, b in enumerate(getattr(m, f"layer{i}"))
                       if b.downsample is not None]
    assert with_projection == ["2.0", "3.0", "4.0"]
    m = build("resnet50")                           # the bottleneck's 64 -> 256 needs one in layer1 too
    assert m.layer1[0].downsample is not None and m.layer1[1].downsample is None


def test_se_module_gates_each_channel():
    from tinyconv.models.resnet import SEModule
    se = SEModule(32, reduction=16)
    assert (se.fc1.weight.shape, se.fc2.weight.shape) == ((2, 32, 1, 1), (32, 2, 1, 1))
    x = tinyconv.randn(2, 32, 5, 5)
    y = se(x).numpy()
    gate = y / x.numpy()                               # one factor in (0, 1) per sample and channel
    assert np.allclose(gate, gate[:, :, :1, :1], rtol=1e-4)
    assert (gate > 0).all() and (gate < 1).all()
    s = x.numpy().mean(axis=(2, 3))
    h = np.maximum(s @ se.fc1.weight.numpy()[:, :, 0, 0].T + se.fc1.bias.numpy(), 0)
    expected = 1 / (1 + np.exp(-(h @ se.fc2.weight.numpy()[:, :, 0, 0].T + se.fc2.bias.numpy())))
    assert np.allclose(gate[:, :, 0, 0], expected, rtol=1e-4)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d", "se_resnet50", "densenet121"])
def test_forward_shape_and_finite(name):
    check_forward(models.get_model(name, num_classes=10), tinyconv.randn(2, 3, 32, 32))


def test_resnet18_training_lowers_loss():
    check_training(models.get_model("resnet18", num_classes=10), tinyconv.randn(2, 3, 32, 32))


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("resnet50", 64), ("resnext50_32x4d", 64), ("se_resnet50", 64),
                                       ("densenet121", 32)])
def test_training_lowers_loss_large(name, size):
    check_training(models.get_model(name, num_classes=10), tinyconv.randn(2, 3, size, size), lr=0.002)


def test_resnet152_backward_batch_of_one():
    # 152 layers, ~500 functions in the graph: the iterative backward reaches every parameter
    model = models.get_model("resnet152", num_classes=10)
    model.eval()                                       # one 1x1 sample per channel at the end: running stats
    x = tinyconv.randn(1, 3, 32, 32, requires_grad=True)
    model(x).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert np.abs(x.grad.numpy()).sum() > 0
    assert np.abs(model.conv1.weight.grad.numpy()).sum() > 0


def test_initialisation_as_torchvision():
    model = models.resnet50()
    w = model.layer3[0].conv2.weight.numpy()          # Kaiming normal, fan_out = 256 * 3 * 3
    assert abs(w.std() / np.sqrt(2 / (256 * 9)) - 1) < 0.05
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all((m.weight.numpy() == 1).all() and (m.bias.numpy() == 0).all() for m in bns)
    fc = model.fc.weight.numpy()                       # Linear's default U(-1/sqrt(2048), 1/sqrt(2048))
    assert np.abs(fc).max() <= 1 / np.sqrt(2048) and np.abs(fc).max() > 0.9 / np.sqrt(2048)


def test_zero_init_residual_starts_blocks_as_identity():
    model = models.resnet18(zero_init_residual=True)
    model.eval()
    block = model.layer1[1]
    assert (block.bn2.weight.numpy() == 0).all()
    x = tinyconv.rand(1, 64, 8, 8)                     # non-negative, as after a ReLU
    with tinyconv.no_grad():
        assert np.array_equal(block(x).numpy(), x.numpy())


# -- DenseNet ------------------------------------------------------------------------------------------------

def test_densenet_blocks_follow_table_1():
    for name, blocks in [("densenet121", [6, 12, 24, 16]), ("densenet264", [6, 12, 64, 48])]:
        f = build(name).features
        assert [len(getattr(f, f"denseblock{i}")) for i in range(1, 5)] == blocks
        assert f.denseblock1.denselayer3.conv1.in_channels == 64 + 2 * 32      # stem + two layers of k=32
        assert f.transition1.conv.out_channels == (64 + 6 * 32) // 2             # compression 0.5


def _dense_block(layers, memory_efficient, seed=0):
    tinyconv.manual_seed(seed)
    block = _DenseBlock(layers, 16, 4, 8, 0.0, memory_efficient)
    block.train()
    return block


def _naive_block_forward(block, x):
    """The textbook dense block: every layer concatenates all earlier maps into a fresh tensor."""
    features = [x]
    for layer in block.values():
        features.append(layer(tinyconv.cat(features, dim=1)))
    return tinyconv.cat(features, dim=1)


def _run(block, naive=False):
    x = tinyconv.randn(2, 16, 8, 8, requires_grad=True)
    y = _naive_block_forward(block, x) if naive else block(x)
    (y * y).sum().backward()
    return y.numpy(), x.grad.numpy(), [p.grad.numpy() for p in block.parameters()]


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_dense_block_equals_the_naive_concatenation(memory_efficient):
    naive = _dense_block(5, False)
    block = _dense_block(5, memory_efficient)
    tinyconv.manual_seed(1)
    y0, gx0, gp0 = _run(naive, naive=True)
    tinyconv.manual_seed(1)
    y, gx, gp = _run(block)
    assert np.array_equal(y, y0) and np.array_equal(gx, gx0)
    assert all(np.array_equal(a, b) for a, b in zip(gp, gp0))
    # the bottleneck recomputed in backward updates the running statistics once, as the plain forward does
    for a, b in zip(naive.values(), block.values()):
        assert int(a.norm1.num_batches_tracked.item()) == int(b.norm1.num_batches_tracked.item()) == 1
        assert np.array_equal(a.norm1.running_mean.numpy(), b.norm1.running_mean.numpy())


def test_dense_block_concatenations_share_one_buffer():
    block = _dense_block(4, False)
    x = tinyconv.randn(2, 16, 8, 8, requires_grad=True)
    y = block(x)
    # walk back from the output through the AppendChannels nodes: every stack is a view of the output
    stacks, f = [], y._ctx
    while isinstance(f, AppendChannels):
        stacks.append(f.inputs[0])
        f = f.inputs[0]._ctx
    assert len(stacks) == 4 and stacks[-1] is x
    assert all(np.shares_memory(s.data, y.data) for s in stacks[:-1])
    assert not np.shares_memory(x.data, y.data)                # the block input is copied in once
    # the backward of a concatenation hands out slices of the incoming gradient, no copies
    gy = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    gs, gnew = y._ctx.backward(gy)
    assert np.shares_memory(gs, gy) and np.shares_memory(gnew, gy)
    assert np.array_equal(np.concatenate([gs, gnew], axis=1), gy)


def _peak_bytes(layers, memory_efficient):
    block = _dense_block(layers, memory_efficient)
    x = tinyconv.randn(2, 16, 8, 8, requires_grad=True)
    tracemalloc.start()
    try:
        block(x).sum().backward()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_efficient_dense_block_grows_linearly():
    # NumPy kernels: their allocations are the ones tracemalloc sees
    with backend.use_kernels("numpy"):
        _peak_bytes(2, False)
        default = {n: _peak_bytes(n, False) for n in (12, 48)}
        efficient = {n: _peak_bytes(n, True) for n in (12, 48)}
    # recomputing the stack-sized bottleneck intermediates leaves O(L) maps: 4x the layers, ~4x the bytes
    # (measured 3.97x)
    assert efficient[48] / efficient[12] < 4.4
    # keeping them costs O(L^2): more than 4x (measured 5.8x; the quadratic term grows with L, so between
    # 12 and 24 layers the two differed by less: 2.25x against 1.97x once batch norm and ReLU kept no
    # stack-sized arrays of their own beyond their outputs)
    assert default[48] / default[12] > 5
    assert efficient[48] < 0.7 * default[48]


# -- NASNet-A Large ------------------------------------------------------------------------------------------

def test_nasnet_parameters_equal_reference_table():
    assert count(build("nasnet_a_large")) == int(REFERENCE["nasnetalarge"]["params"])


@pytest.mark.slow
def test_nasnet_macs_match_reference_table():
    model = build("nasnet_a_large")
    s = tinyconv.summary(model, (3, 331, 331), depth=1)
    shapes = {r["name"]: r["output_shape"] for r in s.rows}
    # "6 @ 4032": stride 2 in conv0 and in each of the four reduction cells, 331 -> 11
    assert [shapes[k][1:] for k in ("conv0", "cell_stem_1", "cell_5", "cell_11", "cell_17")] == \
        [(96, 165, 165), (336, 42, 42), (1008, 42, 42), (2016, 21, 21), (4032, 11, 11)]
    assert abs(s.total_macs / (float(REFERENCE["nasnetalarge"]["GMACs"]) * 1e9) - 1) < 0.01


def test_nasnet_cells_follow_the_search_result():
    from tinyconv.models import nasnet
    rows = nasnet.nasnet_rows()
    assert [k for _, k, *_ in rows].count("normal") == 15 and [k for _, k, *_ in rows].count("reduction") == 2
    model = build("nasnet_a_large")
    normal = model.cell_3
    seps = {name: m.separable_1.depthwise_conv2d.kernel_size[0] for name, m in normal.named_children()
            if isinstance(m, nasnet.BranchSeparables)}
    assert seps == {"comb_iter_0_left": 5, "comb_iter_0_right": 3, "comb_iter_1_left": 5,
                    "comb_iter_1_right": 3, "comb_iter_4_left": 3}
    assert model.cell_6.path_1.conv.in_channels == 1008                 # the reduction cell's own p: cell_4


def test_nasnet_same_padding_matches_tensorflow():
    from tinyconv.models.nasnet import PoolSame, _same_pad
    assert _same_pad(165, 5, 2) == (2, 2) and _same_pad(42, 5, 2) == (1, 2) and _same_pad(42, 3, 2) == (0, 1)
    x = tinyconv.randn(1, 1, 4, 4)
    y = PoolSame("max")(x).numpy()                                      # windows rows/cols {0,1,2} and {2,3}
    xs = x.numpy()[0, 0]
    assert y.shape == (1, 1, 2, 2) and y[0, 0, 1, 1] == xs[2:, 2:].max() and y[0, 0, 0, 0] == xs[:3, :3].max()


@pytest.mark.slow
def test_nasnet_forward_shape_and_finite():
    check_forward(models.get_model("nasnet_a_large", num_classes=10), tinyconv.randn(2, 3, 32, 32))


@pytest.mark.parametrize("name", sorted(RESIDUAL) + ["nasnet_a_large"])
def test_in_channels_and_num_classes_options(name):
    model = build(name, num_classes=7, in_channels=1)
    assert next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels == 1
    assert list(model.parameters())[-1].shape == (7,)
