"""tinyconv.onnx: every zoo model exports, passes onnx.checker and runs in onnxruntime like in tinyconv; imports
(round trips, and graphs PyTorch's own exporter writes) run in tinyconv like the original, differentiably.

Tolerance: float32 throughout; outputs agree to rtol 1e-4 and atol 1e-4 * max|y| (different summation orders
in the convolutions and reductions).
"""
import numpy as np
import pytest

import tinyconv as tc
from tinyconv import models, nn
from tinyconv.nn.init import skip_init

onnx = pytest.importorskip("onnx")
from tinyconv.onnx import build_model, export, load  # noqa: E402

SIZE = {"lenet5": 32, "alexnet": 63, "alexnet_torchvision": 63, "overfeat_fast": 71, "overfeat_accurate": 77,
        "inception_v3": 75, "inception_v4": 75, "inception_resnet_v2": 75, "xception": 71}
# big fully connected layers (60M+ numbers) or deep/wide at any size: run in the slow set
SLOW = {"alexnet", "overfeat_fast", "overfeat_accurate", "vgg11", "vgg11_bn", "vgg11_lrn", "vgg11_lrn_bn", "vgg13",
        "vgg13_bn", "vgg16", "vgg16_bn", "vgg16_c", "vgg16_c_bn", "vgg19", "vgg19_bn", "efficientnet_b4",
        "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "nasnet_a_large", "inception_resnet_v2",
        "inception_v4", "densenet201", "densenet264", "resnet152", "resnext101_32x8d", "resnext101_64x4d",
        "alexnet_torchvision"}
ZOO = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in models.list_models()]


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(np.abs(want).max(), 1e-30))


def randomised(name):
    """The model with random weights *and* BatchNorm statistics (so every initializer matters), cheaply."""
    with skip_init():
        m = models.get_model(name, num_classes=10)
    rng = np.random.default_rng(0)
    for k, t in m.state_dict().items():
        if t.dtype.kind != "f":
            continue
        if k.endswith("running_var"):
            t.data[...] = rng.uniform(0.5, 1.5, t.shape)
        elif t.ndim > 1:
            t.data[...] = rng.standard_normal(t.shape, dtype=np.float32) / np.sqrt(np.prod(t.shape[1:]))
        else:
            t.data[...] = rng.standard_normal(t.shape, dtype=np.float32) * 0.1 + (k.endswith("weight"))
    return m.eval()


def _input(name, n=2):
    s = SIZE.get(name, 32)
    return np.random.default_rng(1).standard_normal((n, 1 if name == "lenet5" else 3, s, s)).astype(np.float32)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_export_runs_in_onnxruntime_and_imports_back(name):
    ort = pytest.importorskip("onnxruntime")
    m, x = randomised(name), _input(name)
    with tc.no_grad():
        want = m(tc.tensor(x)).numpy()
    proto = build_model(m, x)                                   # runs onnx.checker (full check)
    used = {k for k, _ in m.named_parameters() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}  # eval: no aux
    assert {i.name for i in proto.graph.initializer} >= used
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    close(sess.run(None, {"input": x})[0], want)
    back = load(proto)
    with tc.no_grad():
        close(back(x).numpy(), want)


def test_export_writes_a_file_atomically_and_restores_the_mode(tmp_path):
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                      nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(4 * 3 * 3, 5)).train()
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    path = export(m, x, tmp_path / "m.onnx", opset=13)
    assert m.training                                           # exported in eval mode, mode restored
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    ops = [n.op_type for n in proto.graph.node]
    assert "Dropout" not in ops and ops.count("MaxPool") == 1
    assert [a.i for n in proto.graph.node if n.op_type == "MaxPool" for a in n.attribute if a.name == "ceil_mode"] == [1]
    m.eval()
    with tc.no_grad():
        close(load(path)(x).numpy(), m(tc.tensor(x)).numpy())


def test_lrn_and_pool_conventions_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    m = nn.Sequential(nn.Conv2d(3, 6, 3, dilation=2, groups=3, padding=2), nn.LocalResponseNorm(5, 1e-2, 0.75, 2.0),
                      nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False), nn.ReLU6(),
                      nn.AdaptiveAvgPool2d((3, 2)))
    x = np.random.default_rng(0).standard_normal((2, 3, 10, 9)).astype(np.float32)
    with tc.no_grad():
        want = m.eval()(tc.tensor(x)).numpy()
    proto = build_model(m, x)
    lrn = next(n for n in proto.graph.node if n.op_type == "LRN")
    assert {a.name: a.f for a in lrn.attribute}["alpha"] == pytest.approx(1e-2)   # same alpha/size convention
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    close(sess.run(None, {"input": x})[0], want)


@pytest.mark.parametrize("activation, op", [("relu", "Relu"), ("relu6", "Clip")])
def test_fused_batch_norm_activation_exports_as_two_nodes(activation, op):
    """A recorded ``batch_norm_activation`` (what nn.norm_activation runs unrecorded) is BatchNormalization
    followed by its activation."""
    ort = pytest.importorskip("onnxruntime")

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            bn = self.bn
            return tc.functional.batch_norm_activation(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                                       bn.eps, activation)

    m = Block()
    m.bn.running_mean.data[...], m.bn.bias.data[...] = [0.5, -1, 2], [1, 2, 3]
    x = (np.random.default_rng(0).standard_normal((2, 3, 4, 5)) * 4).astype(np.float32)
    with tc.no_grad():
        want = m.eval()(tc.tensor(x)).numpy()
    proto = build_model(m, x)
    assert [n.op_type for n in proto.graph.node if n.op_type != "Identity"] == ["BatchNormalization", op]
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    close(sess.run(None, {"input": x})[0], want)


def test_unsupported_function_is_named():
    from tinyconv.functions.loss import cross_entropy
    m = nn.Linear(3, 4)
    with pytest.raises(NotImplementedError, match="CrossEntropy"):
        build_model(lambda x: cross_entropy(m(x), np.array([0, 1])), np.ones((2, 3), np.float32))


def test_unknown_onnx_operators_all_named():
    h = onnx.helper
    nodes = [h.make_node("Relu", ["x"], ["a"]), h.make_node("Mish", ["a"], ["b"]),
             h.make_node("Einsum", ["b"], ["y"], equation="i->i")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    with pytest.raises(NotImplementedError, match="Einsum, Mish"):
        load(h.make_model(g))


def test_imported_model_is_differentiable_and_trains():
    m = randomised("resnet18")
    x = _input("resnet18")
    back = load(build_model(m, x)).train()
    assert "layer1_0_conv1_weight" in back.state_dict() and back.onnx_names["layer1_0_conv1_weight"] == \
        "layer1.0.conv1.weight"
    assert set(dict(back.named_buffers())) >= {"bn1_running_mean", "bn1_running_var"}
    opt = tc.optim.SGD(back.parameters(), lr=0.01)
    target = tc.tensor(np.array([3, 7]))
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = tc.functional.cross_entropy(back(tc.tensor(x)), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in back.parameters())
    assert losses[-1] < losses[0]


def test_imported_gradient_matches_tinyconv():
    m = randomised("squeezenet1_1")
    x = _input("squeezenet1_1")
    back = load(build_model(m, x))
    xa, xb = tc.Tensor(x, requires_grad=True), tc.Tensor(x, requires_grad=True)
    m(xa).sum().backward()
    back(xb).sum().backward()
    close(xb.grad.numpy(), xa.grad.numpy())


TORCHVISION = [(n, False) for n in ("resnet18", "squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x0_5", "googlenet")]
TORCHVISION += [pytest.param(n, dynamo, marks=pytest.mark.slow) for n, dynamo in
                [("densenet121", False), ("efficientnet_b0", False), ("convnext_tiny", False),
                 ("mobilenet_v2", True), ("squeezenet1_1", True)]]


@pytest.mark.parametrize("name,dynamo", TORCHVISION)
def test_graphs_exported_by_pytorch_import_and_match(torch, tmp_path, name, dynamo):
    """PyTorch's TorchScript exporter (dynamo=False: Shape/Gather/Concat chains, folded BatchNorm) and its
    torch.export-based one (dynamo=True, needs onnxscript)."""
    torchvision = pytest.importorskip("torchvision")
    kw = {"init_weights": True} if name == "googlenet" else {}
    tm = getattr(torchvision.models, name)(**kw).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k, t in tm.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if k.endswith("running_var") else
                        torch.randn(t.shape, generator=g) / (np.sqrt(t[0].numel()) if t.dim() > 1 else 10))
    x = torch.randn(2, 3, 64, 64, generator=g)
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.onnx.export(tm, (x,), str(tmp_path / "t.onnx"), dynamo=dynamo, opset_version=18 if dynamo else 17)
    m = load(tmp_path / "t.onnx")
    with torch.no_grad():
        want = tm(x).numpy()
    with tc.no_grad():
        close(m(x.numpy()).numpy(), want)
