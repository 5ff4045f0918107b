"""``tinyconv.summary``: shape propagation, per-layer parameters and MACs, totals against the reference table."""
import csv
import pathlib

import numpy as np
import pytest

import tinyconv
from tinyconv import backend, models, nn
from tinyconv.nn.init import skip_init

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
REFERENCE = {row["model"].split()[0]: row
             for row in csv.DictReader(open(FIXTURES / "zoo_reference.tsv"), delimiter="\t")}


def small_net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),       # 16x16 -> 8x8
        nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=8, bias=False),      # depthwise, 8x8 -> 6x6
        nn.Conv2d(8, 4, 1, groups=2),                  # grouped 1x1
        nn.MaxPool2d(2),                               # 6x6 -> 3x3
        nn.Flatten(), nn.Linear(4 * 3 * 3, 5),
    )


def test_small_net_rows_and_macs():
    net = small_net()
    s = tinyconv.summary(net, (3, 16, 16))
    shapes = {r["name"]: r["output_shape"] for r in s.rows}
    assert shapes == {"0": (1, 8, 8, 8), "1": (1, 8, 8, 8), "2": (1, 8, 8, 8), "3": (1, 8, 6, 6),
                      "4": (1, 4, 6, 6), "5": (1, 4, 3, 3), "6": (1, 36), "7": (1, 5)}
    # N*K*OH*OW*(C/G)*KH*KW per convolution, in*out for the linear layer
    macs = {"0": 8 * 8 * 8 * 3 * 9, "3": 8 * 6 * 6 * 1 * 9, "4": 4 * 6 * 6 * 4 * 1, "7": 36 * 5}
    assert {r["name"]: r["macs"] for r in s.rows} == {k: macs.get(k, 0) for k in shapes}
    assert s.total_macs == sum(macs.values())
    assert s.total_params == sum(p.numel() for p in net.parameters()) == sum(r["params"] for r in s.rows)
    assert "Total MACs" in str(s) and "Conv2d" in str(s)


def test_batch_axis_and_restored_state():
    net = small_net()
    net.train()
    one = tinyconv.summary(net, (3, 16, 16))
    four = tinyconv.summary(net, (4, 3, 16, 16))
    assert four.input_shape == (4, 3, 16, 16) and one.input_shape == (1, 3, 16, 16)
    assert four.total_macs == 4 * one.total_macs
    assert all(m.training for m in net.modules())
    assert all("forward" not in m.__dict__ for m in net.modules())
    assert not backend.is_shape_only()
    y = net(tinyconv.randn(2, 3, 16, 16))        # the model still computes normally afterwards
    assert y.shape == (2, 5) and np.abs(y.numpy()).sum() > 0


def test_shape_only_skips_convolution_arithmetic():
    conv = nn.Conv2d(2, 3, 3)
    x = tinyconv.randn(1, 2, 5, 5)
    with tinyconv.no_grad(), backend.shape_only() as counter:
        y = conv(x)
    assert y.shape == (1, 3, 3, 3) and not y.numpy().any()
    assert counter.total == 3 * 3 * 3 * 2 * 9


def test_depth_folds_children():
    model = models.get_model("googlenet_torchvision", aux_logits=False)
    s1 = tinyconv.summary(model, (3, 224, 224), depth=1)
    assert all(r["depth"] == 1 for r in s1.rows)
    assert sum(r["macs"] for r in s1.rows) == s1.total_macs
    assert sum(r["params"] for r in s1.rows) == s1.total_params
    full = tinyconv.summary(model, (3, 224, 224), depth=None)
    assert full.total_macs == s1.total_macs and len(full.rows) > len(s1.rows)


def test_modules_not_run_are_listed():
    with skip_init():
        model = models.get_model("googlenet_torchvision")
    s = tinyconv.summary(model, (3, 224, 224), depth=1)
    aux = [r for r in s.rows if r["name"] in ("aux1", "aux2")]
    assert [r["output_shape"] for r in aux] == [None, None] and all(r["params"] > 0 for r in aux)


# tinyconv model (with options) -> name in the reference table.
REFERENCE_MODELS = [
    ("lenet5", {}, "lenet5"),
    ("alexnet", {}, "alexnet_paper_ungrouped"),
    ("alexnet", {"groups": 2}, "alexnet_paper_grouped"),
    ("alexnet_torchvision", {}, "alexnet"),
    ("overfeat_fast", {}, "overfeat_fast"),
    ("overfeat_accurate", {}, "overfeat_accurate"),
    ("vgg11", {}, "vgg11"), ("vgg11_lrn", {}, "vgg11_lrn"), ("vgg13", {}, "vgg13"), ("vgg16_c", {}, "vgg16_c"),
    ("vgg16", {}, "vgg16"), ("vgg16_bn", {}, "vgg16_bn"), ("vgg19", {}, "vgg19"),
    ("googlenet_torchvision", {}, "googlenet"),
    ("inception_v3", {}, "inception_v3"),
    ("inception_v4", {}, "inception_v4"),
    ("inception_resnet_v2", {}, "inception_resnet_v2"),
    ("xception", {}, "legacy_xception"),
]


@pytest.mark.parametrize("name,options,ref", REFERENCE_MODELS, ids=lambda v: v if isinstance(v, str) else "")
def test_totals_match_reference(name, options, ref):
    row = REFERENCE[ref]
    with skip_init():
        model = models.get_model(name, **options)
    channels = 1 if name == "lenet5" else 3
    s = tinyconv.summary(model, (channels, int(row["input"]), int(row["input"])))
    assert s.total_params == int(row["params"])
    assert abs(s.total_macs / (float(row["GMACs"]) * 1e9) - 1) < 0.01


# GoogLeNet's Table 1 (the paper's network): "ops" per layer at 224x224, in millions of multiply-adds.
# 5a's 54M is left out: it follows the row's misprinted 1072K parameters (the row's widths give 1018K, 51M).
GOOGLENET_OPS_M = {"inception3a": 128, "inception3b": 304, "inception4a": 73, "inception4b": 88,
                   "inception4c": 100, "inception4d": 119, "inception4e": 170, "inception5b": 71, "fc": 1}


def test_googlenet_paper_ops_per_layer():
    with skip_init():
        model = models.get_model("googlenet")
    s = tinyconv.summary(model, (3, 224, 224), depth=1)
    macs = {r["name"]: r["macs"] for r in s.rows}
    for name, ops in GOOGLENET_OPS_M.items():
        assert abs(macs[name] / 1e6 - ops) <= 0.02 * ops + 1, name


def test_shape_only_counts_matmul():
    a, b = tinyconv.randn(3, 4, 5), tinyconv.randn(5, 6)
    with tinyconv.no_grad(), backend.shape_only() as counter:
        y = a @ b
    assert y.shape == (3, 4, 6) and counter.total == 3 * 4 * 5 * 6
    assert np.allclose(y.numpy(), a.numpy() @ b.numpy(), atol=1e-5)   # matrix products still compute


def test_zoo_table_example(capsys):
    import runpy
    import sys
    script = pathlib.Path(__file__).resolve().parent.parent / "examples" / "zoo_table.py"
    argv, sys.argv = sys.argv, [str(script), "--models", "lenet5", "alexnet"]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    assert done.value.code == 0
    lines = {line.split()[0] + (" groups=2" if "groups=2" in line else ""): line
             for line in capsys.readouterr().out.splitlines() if line.startswith(("lenet5", "alexnet"))}
    assert "61,706" in lines["lenet5"] and " = " in lines["lenet5"]
    assert "62,378,344" in lines["alexnet"] and "1.135" in lines["alexnet"]
    assert "60,965,224" in lines["alexnet groups=2"]


def test_rows_in_definition_order_parents_before_children():
    with skip_init():
        model = models.resnet18()
    names = [r["name"] for r in tinyconv.summary(model, (3, 64, 64), depth=None).rows]
    defined = [name for name, _ in model.named_modules() if name]
    assert names == [n for n in defined if n in names]
    assert names.index("layer2.0") < names.index("layer2.0.conv1") < names.index("layer2.0.downsample")
    assert names.index("layer2.0.downsample") < names.index("layer2.0.downsample.0")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "googlenet_torchvision"])
def test_fused_blocks_still_show_every_layer(name):
    """The zoo's blocks fuse convolution, batch norm and ReLU in evaluation (nn.fusion); the summary, which runs
    the model in evaluation, still sees each module run, with its output shape and its own MACs."""
    with skip_init():
        model = models.get_model(name, num_classes=10)
    s = tinyconv.summary(model, (3, 64, 64), depth=None)
    types = {"Conv2d", "BatchNorm2d", "ReLU", "ReLU6"}
    rows = [r for r in s.rows if r["type"] in types and not r["name"].startswith(("aux1", "aux2"))]
    assert len(rows) > 40 and all(r["output_shape"] is not None for r in rows)
    conv_macs = sum(r["macs"] for r in rows if r["type"] == "Conv2d")
    assert conv_macs > 0.95 * s.total_macs  # nearly all the work is in the convolutions' own rows
