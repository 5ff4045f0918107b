"""The classic model zoo: LeNet-5, AlexNet, OverFeat, VGG, GoogLeNet, Inception v2/v3/v4, Inception-ResNet-v2,
Xception.

Parameter counts against the reference table (tests/fixtures/zoo_reference.tsv, a copy of the project's
reference figures) and the papers; state-dict keys and shapes against torchvision's (tests/fixtures/
torchvision_keys/); forward shapes at the smallest input each architecture accepts; a few SGD steps lower the
loss; the paper's sparse C3 table of LeNet-5 and GoogLeNet's per-layer parameter table.
"""
import csv
import json
import pathlib

import numpy as np
import pytest

import tinyconv
import tinyconv.functional as F
from tinyconv import models, nn
from tinyconv.nn.init import skip_init

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
REFERENCE = {row["model"].split()[0]: row
             for row in csv.DictReader(open(FIXTURES / "zoo_reference.tsv"), delimiter="\t")}

# tinyconv factory (with options) -> name in the reference table.
REFERENCE_NAME = {
    ("lenet5", ()): "lenet5",
    ("alexnet", ()): "alexnet_paper_ungrouped",
    ("alexnet", (("groups", 2),)): "alexnet_paper_grouped",
    ("alexnet_torchvision", ()): "alexnet",
    ("overfeat_fast", ()): "overfeat_fast",
    ("overfeat_accurate", ()): "overfeat_accurate",
    ("vgg11", ()): "vgg11", ("vgg11_lrn", ()): "vgg11_lrn", ("vgg13", ()): "vgg13", ("vgg16_c", ()): "vgg16_c",
    ("vgg16", ()): "vgg16", ("vgg16_bn", ()): "vgg16_bn", ("vgg19", ()): "vgg19",
    ("googlenet_torchvision", ()): "googlenet",
    ("inception_v3", ()): "inception_v3",
    ("inception_v4", ()): "inception_v4",
    ("inception_resnet_v2", ()): "inception_resnet_v2",
    ("xception", ()): "legacy_xception",
}
TORCHVISION_KEYS = {
    "alexnet_torchvision": "alexnet", "vgg11": "vgg11", "vgg11_bn": "vgg11_bn", "vgg13": "vgg13",
    "vgg13_bn": "vgg13_bn", "vgg16": "vgg16", "vgg16_bn": "vgg16_bn", "vgg19": "vgg19", "vgg19_bn": "vgg19_bn",
    "googlenet_torchvision": "googlenet", "inception_v3": "inception_v3",
}
CLASSIC = ["lenet5", "alexnet", "alexnet_torchvision", "overfeat_fast", "overfeat_accurate",
           "vgg11", "vgg11_bn", "vgg11_lrn", "vgg11_lrn_bn", "vgg13", "vgg13_bn", "vgg16_c", "vgg16_c_bn",
           "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "googlenet", "googlenet_torchvision",
           "inception_v2", "inception_v3", "inception_v4", "inception_resnet_v2", "xception"]


def count(model):
    return sum(p.numel() for p in model.parameters())


def build(name, **kw):
    """The model with its weights left unfilled: cheap, for counting and shapes."""
    with skip_init():
        return models.get_model(name, **kw)


def test_all_registered():
    assert set(CLASSIC) <= set(models.list_models())


@pytest.mark.parametrize("name,options", sorted(REFERENCE_NAME), ids=lambda v: str(v))
def test_parameters_equal_reference_table(name, options):
    ref = REFERENCE[REFERENCE_NAME[(name, options)]]
    model = build(name, **dict(options))
    assert count(model) == int(ref["params"])
    without_aux = sum(p.numel() for k, p in model.named_parameters() if not k.startswith(("aux", "AuxLogits")))
    assert without_aux == int(ref["params_without_aux"])


def test_lenet5_partial_c3_parameter_count():
    # C3 of the paper's Table I: 60 connections of 5x5 weights plus 16 biases, instead of 16 * (6 * 25 + 1)
    full = count(build("lenet5"))
    partial = count(build("lenet5", partial_c3=True))
    assert full - partial == 16 * (6 * 25 + 1) - (60 * 25 + 16)
    assert partial == 60806


def test_lenet5_partial_c3_connections():
    from tinyconv.models.lenet import C3_CONNECTIONS, PartialConv2d
    conv = PartialConv2d(C3_CONNECTIONS, 5)
    x = tinyconv.randn(1, 6, 10, 10)
    y = conv(x).numpy()
    assert y.shape == (1, 16, 6, 6)
    for j in range(6):
        x2 = x.numpy().copy()
        x2[:, j] += 1.0
        changed = np.abs(conv(tinyconv.tensor(x2)).numpy() - y).reshape(16, -1).max(axis=1) > 0
        assert changed.tolist() == [j in c for c in C3_CONNECTIONS], f"input map {j}"


def test_inception_v2_against_lectures():
    # The lectures' comparison table gives BN-Inception 11.2M parameters (no exact reference exists).
    assert abs(count(build("inception_v2")) / 11.2e6 - 1) < 0.01


@pytest.mark.parametrize("name", sorted(TORCHVISION_KEYS))
def test_state_dict_keys_equal_torchvision(name):
    expected = json.loads((FIXTURES / "torchvision_keys" / f"{TORCHVISION_KEYS[name]}.json").read_text())
    got = {k: list(v.shape) for k, v in build(name).state_dict().items()}
    assert list(got) == list(expected)
    assert got == expected


# The paper's Table 1 (GoogLeNet, in the lectures): parameters of the weights (no biases) in units of 1024.
# Left out as misprints of the paper: conv1's 2.7K (7*7*3*64 = 9408 = 9.2K), 4c's 463K (its own ops column,
# 100M at 14x14, implies 498K, which is what the row's widths give) and 5a's 1072K (the row's widths give
# 1018K, consistent with 4e's 840K for 304 fewer input maps).
GOOGLENET_TABLE_PARAMS_K = {
    "conv2": 112, "inception3a": 159, "inception3b": 380, "inception4a": 364, "inception4b": 437,
    "inception4d": 580, "inception4e": 840, "inception5b": 1388, "fc": 1000,
}


def test_googlenet_paper_per_layer_parameters():
    model = build("googlenet", aux_logits=False)
    for name, k in GOOGLENET_TABLE_PARAMS_K.items():
        block = getattr(model, name)
        if name == "conv2":
            block = nn.Sequential(model.conv2, model.conv3)   # the table's "convolution 3x3" row has both
        weights = sum(p.numel() for pname, p in block.named_parameters() if pname.endswith("weight"))
        assert abs(weights / 1024 - k) <= 0.02 * k, name


def test_aux_loss_weights():
    # GoogLeNet's paper adds each auxiliary loss with weight 0.3; torchvision trains Inception-v3's with 0.4
    assert build("googlenet").aux_weight == build("googlenet_torchvision").aux_weight == 0.3
    assert build("inception_v3").aux_weight == 0.4


# -- forward and training ---------------------------------------------------------------------------------
# The smallest input each accepts (or its usual size where that is small anyway).
MIN_SIZE = {"lenet5": 32, "alexnet": 63, "alexnet_torchvision": 63, "overfeat_fast": 71, "overfeat_accurate": 77,
            "googlenet": 32, "googlenet_torchvision": 32, "inception_v2": 32, "inception_v3": 75,
            "inception_v4": 75, "inception_resnet_v2": 75, "xception": 71}


def _input(name, n=2):
    size = MIN_SIZE.get(name, 32)
    return tinyconv.randn(n, 1 if name == "lenet5" else 3, size, size)


# The rest (60M+ parameters in fully connected layers, whose initialisation alone draws 100M+ random numbers,
# or the deep Inception-v3/v4 family) run in the slow set.
FAST_FORWARD = ["lenet5", "googlenet", "inception_v2", "xception", "alexnet_torchvision"]
SLOW_FORWARD = ["alexnet", "overfeat_fast", "overfeat_accurate", "vgg11_lrn", "vgg16_c_bn",
                "inception_v3", "inception_v4", "inception_resnet_v2"]


def _check_forward(model, name):
    model.eval()
    with tinyconv.no_grad():
        y = model(_input(name))
    assert y.shape == (2, 10)
    assert np.isfinite(y.numpy()).all()
    assert np.ptp(y.numpy(), axis=1).min() > 0    # the classes get different scores


@pytest.mark.parametrize("name", FAST_FORWARD)
def test_forward_shape_and_finite(name):
    _check_forward(models.get_model(name, num_classes=10), name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_FORWARD)
def test_forward_shape_and_finite_large(name):
    _check_forward(models.get_model(name, num_classes=10), name)


def _loss(model, out, target):
    """Cross-entropy, with the auxiliary heads weighted by ``model.aux_weight`` (0.3 GoogLeNet, 0.4 v3)."""
    if isinstance(out, tuple):
        main, *aux = out
        loss = F.cross_entropy(main, target)
        for a in aux:
            loss = loss + model.aux_weight * F.cross_entropy(a, target)
        return loss
    return F.cross_entropy(out, target)


def _check_training(name, steps=3, lr=0.001, **kw):
    """A few plain SGD steps on one batch of 2 random images must lower the loss."""
    model = models.get_model(name, num_classes=10, **kw)
    model.train()
    x = _input(name)
    target = tinyconv.tensor(np.array([3, 7]))
    opt = tinyconv.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = _loss(model, model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0], losses
    return model


@pytest.mark.parametrize("name,options", [("lenet5", {}), ("lenet5", {"modern": True}),
                                          ("lenet5", {"partial_c3": True}), ("googlenet_torchvision", {})],
                         ids=str)
def test_training_lowers_loss(name, options):
    _check_training(name, **options)


def test_googlenet_training_returns_aux():
    model = models.get_model("googlenet", num_classes=10)
    out = model(_input("googlenet"))
    assert isinstance(out, tuple) and len(out) == 3 and all(o.shape == (2, 10) for o in out)
    model.eval()
    with tinyconv.no_grad():
        assert model(_input("googlenet")).shape == (2, 10)


@pytest.mark.slow
def test_inception_v3_training_returns_aux():
    model = models.get_model("inception_v3", num_classes=10)
    out = model(_input("inception_v3"))   # 75x75: the aux head pools its 3x3 input adaptively to 5x5
    assert isinstance(out, tuple) and len(out) == 2 and all(o.shape == (2, 10) for o in out)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["googlenet", "alexnet", "xception", "inception_v3"])
def test_training_lowers_loss_large(name):
    # a few representatives of the slow ones: LRN and true 5x5 (GoogLeNet), the paper's AlexNet with its
    # init (biases 1), depthwise-separable convolutions (Xception), factorised convolutions and the aux head
    # (Inception v3 on a batch of 2, batch norm included, is chaotic at these rates: its third loss moved
    # with the last bits of the products, 11.97, 9.15, 13.20 at lr 1e-3 and 12.78, 11.09, 15.55 at 3e-4 after
    # 1x1 layers went image by image; at 1e-4 it fell 12.78, 7.60, 6.82)
    _check_training(name, lr=1e-4 if name == "inception_v3" else 0.001)


def test_initialisation_follows_the_papers():
    # LeNet-5 (LeCun et al. 1998, Appendix C), init="paper": U(-2.4 / F_in, 2.4 / F_in)
    for m in models.lenet5(init="paper").modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = 2.4 / (m.weight.numel() // m.weight.shape[0])
            w = np.abs(m.weight.numpy())
            assert w.max() <= bound and w.max() > 0.5 * bound
    # GoogLeNet (BVLC Caffe): convolution biases 0.2; torchvision's: no convolution bias, BN weight 1, bias 0
    paper = models.googlenet(aux_logits=False)
    assert all(np.all(m.bias.numpy() == np.float32(0.2)) for m in paper.modules() if isinstance(m, nn.Conv2d))
    tv = models.googlenet_torchvision(aux_logits=False)
    assert all(m.bias is None for m in tv.modules() if isinstance(m, nn.Conv2d))
    assert all(np.all(m.weight.numpy() == 1) and np.all(m.bias.numpy() == 0)
               for m in tv.modules() if isinstance(m, nn.BatchNorm2d))
    # torchvision's truncated normal, std 0.01 in [-2, 2]
    w = tv.conv1.conv.weight.numpy()
    assert abs(w.std() / 0.01 - 1) < 0.1


@pytest.mark.parametrize("modern", [False, True])
def test_lenet5_default_init_is_the_lectures(modern):
    # Xavier-uniform for tanh (std sqrt(2 / (fan_in + fan_out)), bound sqrt(6 / ...)), He-normal for ReLU
    # (std sqrt(2 / fan_in)), biases zero (lecture 003)
    tinyconv.manual_seed(0)
    layers = [m for m in models.lenet5(modern=modern).modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers:
        w = m.weight.numpy()
        receptive = w[0, 0].size if w.ndim == 4 else 1
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        std = np.sqrt(2 / fan_in) if modern else np.sqrt(2 / (fan_in + fan_out))
        assert abs(w.std() / std - 1) < 0.25, (m, w.std(), std)
        if not modern:
            assert np.abs(w).max() <= np.sqrt(6 / (fan_in + fan_out)) + 1e-7
        assert np.all(m.bias.numpy() == 0)
    with pytest.raises(ValueError, match="unknown init 'xavier'.*'lectures', 'paper'"):
        models.lenet5(init="xavier")


def _train_zoo():
    import importlib.util
    path = pathlib.Path(__file__).resolve().parent.parent.parent / "examples" / "train_zoo.py"
    spec = importlib.util.spec_from_file_location("train_zoo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("size", [32, 64])
def test_train_zoo_resize_matches_torch_bilinear(torch, size):
    images = np.random.default_rng(0).random((3, 28, 28)).astype(np.float32)
    ours = _train_zoo().Resize(size).batch(images)
    ref = torch.nn.functional.interpolate(torch.from_numpy(images)[:, None], size=(size, size), mode="bilinear",
                                          align_corners=False)[:, 0].numpy()
    assert ours.shape == (3, size, size)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_train_zoo_aux_loss():
    tz = _train_zoo()
    wrapper = tz.MainOutput(models.get_model("googlenet_torchvision", num_classes=10, in_channels=1))
    loss_fn = tz.make_loss(wrapper)
    x, y = tinyconv.randn(2, 1, 32, 32), tinyconv.tensor(np.array([1, 2]))
    out = wrapper(x)                                   # training mode: logits, aux heads kept aside
    assert out.shape == (2, 10) and len(wrapper.aux) == 2
    expected = F.cross_entropy(out, y).item() + 0.3 * sum(F.cross_entropy(a, y).item() for a in wrapper.aux)
    assert abs(loss_fn(out, y).item() - expected) < 1e-5
    wrapper.eval()
    with tinyconv.no_grad():
        wrapper(x)
    assert wrapper.aux == ()
