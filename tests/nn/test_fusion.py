"""nn.norm_activation: batch norm and its ReLU fused in evaluation, with the two modules' bits, and exactly
``act(norm(x))`` wherever the two could behave differently (training, a recorded graph, hooks)."""
import numpy as np
import pytest

import tinyconv as tc
from tinyconv import models, nn
from tinyconv.functions import activation as A
from tinyconv.nn import fusion


def _block(act=nn.ReLU6, C=4):
    bn = nn.BatchNorm2d(C)
    rng = np.random.default_rng(1)  # running statistics and affine parameters away from the defaults
    bn.running_mean.data[...] = rng.standard_normal(C)
    bn.running_var.data[...] = rng.uniform(0.5, 2, C)
    bn.weight.data[...] = rng.uniform(0.5, 2, C)
    bn.bias.data[...] = rng.standard_normal(C) + 2
    return bn.eval(), act()


def _x(shape=(2, 4, 5, 5), requires_grad=False):
    return tc.tensor((np.random.default_rng(2).standard_normal(shape) * 4).astype(np.float32),
                     requires_grad=requires_grad)


def _activation_calls(monkeypatch):
    """A list that grows by one each time ReLU's or ReLU6's own op runs."""
    calls = []
    for cls in (A.ReLU, A.ReLU6):
        forward = cls.forward
        monkeypatch.setattr(cls, "forward", lambda self, x, _f=forward: calls.append(1) or _f(self, x))
    return calls


@pytest.mark.parametrize("act", [nn.ReLU, nn.ReLU6])
def test_fused_in_evaluation_with_the_modules_bits(monkeypatch, act):
    bn, a = _block(act)
    x = _x()
    with tc.no_grad():
        want = a(bn(x)).numpy()
        calls = _activation_calls(monkeypatch)
        got = nn.norm_activation(bn, a, x)
    assert calls == []  # one pass: the activation's own op did not run
    assert got.dtype == x.dtype and not got.requires_grad
    np.testing.assert_array_equal(got.numpy().view(np.uint32), want.view(np.uint32))


def test_not_fused_where_it_could_be_told_apart(monkeypatch):
    bn, a = _block()
    x = _x()
    calls = _activation_calls(monkeypatch)
    y = nn.norm_activation(bn, a, _x(requires_grad=True))  # a graph is recorded: ReLU6 gets its own node
    assert len(calls) == 1 and y.requires_grad
    y.sum().backward()
    with tc.no_grad():
        seen = []
        handle = a.register_forward_hook(lambda m, args, out: seen.append(out))
        nn.norm_activation(bn, a, x)  # a hook on either module sees the modules run one by one
        handle.remove()
        assert len(seen) == 1 and len(calls) == 2
        handle = bn.register_forward_pre_hook(lambda m, args: None)
        nn.norm_activation(bn, a, x)
        handle.remove()
        assert len(calls) == 3
        nn.norm_activation(bn, nn.LeakyReLU(), x)  # another activation: its own module (no ReLU6 op)
        nn.norm_activation(bn, a, x)  # the hooks gone: fused again
        assert len(calls) == 3
    bn.train()
    before = bn.running_mean.numpy().copy()
    with tc.no_grad():
        nn.norm_activation(bn, a, x)  # training: batch statistics, and the running ones move
    assert len(calls) == 4 and not np.array_equal(bn.running_mean.numpy(), before)


def test_checks_and_messages_are_the_modules():
    bn, a = _block()
    with tc.no_grad(), pytest.raises(ValueError, match=r"BatchNorm2d\(4\): expected input of shape"):
        nn.norm_activation(bn, a, _x((2, 3, 5, 5)))
    with pytest.raises(TypeError, match="expected two modules"):
        nn.norm_activation(bn, tc.functional.relu, _x())


def randomize_batch_norms(model, seed=3):
    """Running statistics and affine parameters away from their initial values (1, 0), so that fusing a
    batch norm wrongly shows."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            C = m.num_features
            m.running_mean.data[...] = rng.standard_normal(C) * 0.1
            m.running_var.data[...] = rng.uniform(0.5, 2, C)
            m.weight.data[...] = rng.uniform(0.5, 1.5, C)
            m.bias.data[...] = rng.standard_normal(C) * 0.1
    return model


def _convolutions(monkeypatch):
    """A list that grows by one each time the plain convolution op (Conv2dFn) runs."""
    from tinyconv.functions import conv as C
    calls, forward = [], C.Conv2dFn.forward
    monkeypatch.setattr(C.Conv2dFn, "forward", lambda self, *a, _f=forward: calls.append(1) or _f(self, *a))
    return calls


@pytest.mark.parametrize("name, size", [("resnet18", 32), ("resnet50", 32), ("mobilenet_v2", 32),
                                        ("googlenet_torchvision", 64), ("efficientnet_b0", 32)])
def test_zoo_evaluation_is_bit_for_bit_the_unfused_network(monkeypatch, name, size):
    """The blocks that fuse (ConvNormActivation, ResNet's blocks, stem and shortcut, MobileNetV2's projection,
    BasicConv2d) give the network's bits."""
    model = randomize_batch_norms(models.get_model(name, num_classes=10).eval())
    x = _x((2, 3, size, size))
    with tc.no_grad():
        convs = _convolutions(monkeypatch)
        fused = model(x).numpy()
        n_fused = len(convs)  # convolutions followed by no batch norm: the classifier's, GoogLeNet's aux heads
        monkeypatch.setattr(fusion, "fusable", lambda *args: False)
        monkeypatch.setattr(fusion, "conv_fusable", lambda *args: False)
        unfused = model(x).numpy()
    assert len(convs) - n_fused > max(n_fused, 1)  # most convolutions are fused with their batch norm (not SE gates)
    np.testing.assert_array_equal(fused.view(np.uint32), unfused.view(np.uint32))
