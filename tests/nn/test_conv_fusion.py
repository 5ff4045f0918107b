"""nn.conv_norm_activation: a convolution, its batch norm and ReLU/ReLU6 as one op in evaluation
(F.conv2d_batch_norm: each chunk of the convolution's output normalised as soon as it is computed), with the
modules' bits on every way the convolution is computed, and exactly ``act(norm(conv(x)))`` wherever the fused
op could be told apart (a recorded graph, hooks, training)."""
import numpy as np
import pytest

import tinyconv as tc
from tinyconv import backend, nn
from tinyconv.functions import conv as C

from test_fusion import randomize_batch_norms

# (N, C, K, H, kernel, stride, padding, groups, dilation): the strategies of kernels/conv_algorithms.py
LAYERS = {
    "1x1, image by image": (3, 8, 16, 5, 1, 1, 0, 1, 1),
    "1x1 on 2x2 images, one product": (3, 8, 16, 2, 1, 1, 0, 1, 1),
    "3x3, im2col in two chunks": (9, 16, 16, 16, 3, 1, 1, 1, 1),
    "3x3, one image": (1, 8, 12, 9, 3, 1, 1, 1, 1),
    "3x3 stride 2": (4, 8, 12, 9, 3, 2, 1, 1, 1),
    "3x3 dilation 2": (2, 8, 12, 9, 3, 1, 2, 1, 2),
    "depthwise": (3, 8, 8, 9, 3, 1, 1, 8, 1),
    "grouped": (3, 8, 8, 9, 3, 1, 1, 4, 1),
    "full window": (3, 8, 16, 5, 5, 1, 0, 1, 1),
    "direct (few channels)": (4, 1, 6, 12, 5, 1, 0, 1, 1),
    "winograd": (4, 64, 64, 32, 3, 1, 1, 1, 1),
    "winograd F(4x4, 3x3)": (4, 128, 128, 32, 3, 1, 1, 1, 1),
}
ACTIVATIONS = {"none": None, "relu": nn.ReLU, "relu6": nn.ReLU6, "silu (not fused)": nn.SiLU}


def _modules(N, Cin, K, H, k, s, p, G, d, bias=False, act=nn.ReLU6, dtype=np.float32):
    tc.manual_seed(0)
    conv = nn.Conv2d(Cin, K, k, s, p, d, G, bias=bias, dtype=dtype)
    net = randomize_batch_norms(nn.Sequential(conv, nn.BatchNorm2d(K, dtype=dtype))).eval()
    x = tc.tensor((np.random.default_rng(4).standard_normal((N, Cin, H, H)) * 2).astype(dtype))
    return conv, net[1], None if act is None else act(), x


def _ops(monkeypatch):
    """The ops that run: 'conv' (Conv2dFn, the unfused convolution) and 'fused' (Conv2dBatchNormFn)."""
    ran = []
    for name, cls in (("conv", C.Conv2dFn), ("fused", C.Conv2dBatchNormFn)):
        monkeypatch.setattr(cls, "forward", lambda self, *a, _f=cls.forward, _n=name: ran.append(_n) or _f(self, *a))
    return ran


def _bits(t):
    return t.numpy().view(np.uint64 if t.dtype == np.float64 else np.uint32)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("layer", LAYERS)
def test_fused_with_the_modules_bits(monkeypatch, layer, act):
    conv, bn, a, x = _modules(*LAYERS[layer], bias=layer.startswith("3x3"), act=ACTIVATIONS[act])
    with tc.no_grad():
        want = bn(conv(x)) if a is None else a(bn(conv(x)))
        ran = _ops(monkeypatch)
        got = nn.conv_norm_activation(conv, bn, a, x)
    assert ran == ["fused"] and not got.requires_grad
    np.testing.assert_array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("layer", ["3x3, im2col in two chunks", "depthwise", "1x1, image by image"])
def test_fused_on_the_numpy_references_and_in_float64(layer):
    for kernels, dtype in (("numpy", np.float32), ("auto", np.float64)):
        conv, bn, a, x = _modules(*LAYERS[layer], dtype=dtype)
        with tc.no_grad(), backend.use_kernels(kernels):
            want, got = a(bn(conv(x))), nn.conv_norm_activation(conv, bn, a, x)
        assert got.dtype == dtype
        np.testing.assert_array_equal(_bits(got), _bits(want))


def test_fused_under_an_algorithm_picked_by_hand():
    conv, bn, a, x = _modules(*LAYERS["3x3, one image"])
    with tc.no_grad(), backend.conv_algorithm("naive"):
        want, got = a(bn(conv(x))), nn.conv_norm_activation(conv, bn, a, x)
    np.testing.assert_array_equal(_bits(got), _bits(want))


def test_not_fused_where_it_could_be_told_apart(monkeypatch):
    conv, bn, a, x = _modules(*LAYERS["3x3, one image"])
    ran = _ops(monkeypatch)
    y = nn.conv_norm_activation(conv, bn, a, x)  # the parameters require gradients: a graph is recorded
    assert ran == ["conv"] and y.requires_grad
    y.sum().backward()
    assert conv.weight.grad is not None and bn.weight.grad is not None
    with tc.no_grad():
        for module in (conv, bn):  # a hook on the convolution or the batch norm sees the modules run one by one
            seen = []
            handle = module.register_forward_hook(lambda m, args, out: seen.append(out))
            nn.conv_norm_activation(conv, bn, a, x)
            handle.remove()
            assert len(seen) == 1 and ran[-1] == "conv"
        seen = []
        handle = a.register_forward_hook(lambda m, args, out: seen.append(args[0]))
        y = nn.conv_norm_activation(conv, bn, a, x)  # a hooked activation runs as a module, after the fused op
        handle.remove()
        assert ran[-1] == "fused" and len(seen) == 1
        np.testing.assert_array_equal(_bits(y), _bits(a(seen[0])))
        del ran[:]
        nn.conv_norm_activation(conv, bn, a, x)
        assert ran == ["fused"]
    bn.train()
    before = bn.running_mean.numpy().copy()
    with tc.no_grad():
        nn.conv_norm_activation(conv, bn, a, x)  # training: batch statistics, and the running ones move
    assert ran[-1] == "conv" and not np.array_equal(bn.running_mean.numpy(), before)


def test_checks_and_messages_are_the_modules():
    conv, bn, a, x = _modules(*LAYERS["3x3, one image"])
    with tc.no_grad():
        with pytest.raises(ValueError, match=r"^Conv2d\(8, 12, kernel_size=\(3, 3\)\): expected input of shape"):
            nn.conv_norm_activation(conv, bn, a, x[:, :4])
        with pytest.raises(TypeError, match=r"^Conv2d\(8, 12, kernel_size=\(3, 3\)\): expected input of dtype"):
            nn.conv_norm_activation(conv, bn, a, tc.tensor(x.numpy().astype(np.float64)))
        with pytest.raises(ValueError, match=r"BatchNorm2d\(5\): expected input of shape"):
            nn.conv_norm_activation(conv, nn.BatchNorm2d(5).eval(), a, x)
    with pytest.raises(TypeError, match="expected two modules and a module or None"):
        nn.conv_norm_activation(conv, bn, tc.functional.relu, x)


def test_functional_refuses_a_recorded_graph_and_bad_arguments():
    conv, bn, a, x = _modules(*LAYERS["3x3, one image"])
    args = (x, conv.weight, None, bn.running_mean, bn.running_var, bn.weight, bn.bias, 1, 1)
    with pytest.raises(RuntimeError, match="inference only"):
        tc.functional.conv2d_batch_norm(*args)  # conv.weight requires a gradient, grad mode is on
    with tc.no_grad():
        with pytest.raises(ValueError, match="activation should be None, 'relu' or 'relu6', got 'gelu'"):
            tc.functional.conv2d_batch_norm(*args, activation="gelu")
        with pytest.raises(ValueError, match=r"running_var should have shape \(12,\) for the 12 output channels"):
            tc.functional.conv2d_batch_norm(x, conv.weight, None, bn.running_mean, bn.running_var[:3])
        with pytest.raises(ValueError, match="running_mean and running_var are required"):
            tc.functional.conv2d_batch_norm(x, conv.weight, None, None, bn.running_var)
        with pytest.raises(ValueError, match=r"expected input of shape \(N, C, H, W\)"):
            tc.functional.conv2d_batch_norm(x[0], conv.weight, None, bn.running_mean, bn.running_var)
        y = tc.functional.conv2d_batch_norm(*args, activation="relu")
        np.testing.assert_array_equal(_bits(y), _bits(tc.functional.relu(bn(conv(x)))))
