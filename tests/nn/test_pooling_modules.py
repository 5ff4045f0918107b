"""Pooling and LRN layers: PyTorch's defaults and repr, errors naming the layer, forward/backward against PyTorch."""
import numpy as np
import pytest

import tinyconv as tc
import tinyconv.nn as nn

# (our layer, PyTorch's layer) built from the same arguments
LAYERS = [
    ("MaxPool2d", (3,), dict(stride=2)),                                  # AlexNet's overlapping pooling
    ("MaxPool2d", (2,), {}),
    ("MaxPool2d", ((3, 2),), dict(stride=(2, 1), padding=1, dilation=(1, 2), ceil_mode=True)),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("AvgPool2d", (2,), dict(divisor_override=3)),
    ("AdaptiveAvgPool2d", ((3, None),), {}),
    ("AdaptiveAvgPool2d", (1,), {}),
    ("AdaptiveMaxPool2d", (4,), {}),
    ("LocalResponseNorm", (5,), dict(alpha=5e-4, k=2.0)),
    ("LocalResponseNorm", (2,), {}),
]


@pytest.mark.parametrize("name,args,kwargs", LAYERS)
def test_layer_matches_torch_forward_backward_and_repr(torch, name, args, kwargs):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    rng = np.random.default_rng(0)
    x_np = (rng.permutation(2 * 6 * 9 * 7).reshape(2, 6, 9, 7) / 100).astype(np.float32)
    x, xt = tc.tensor(x_np, requires_grad=True), torch.tensor(x_np, requires_grad=True)
    y, yt = ours(x), theirs(xt)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-6)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_defaults_follow_pytorch():
    m = nn.MaxPool2d(3)
    assert (m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode) == (3, 0, 1, False, False)
    a = nn.AvgPool2d((2, 3))
    assert (a.stride, a.padding, a.ceil_mode, a.count_include_pad, a.divisor_override) == ((2, 3), 0, False, True, None)
    lrn = nn.LocalResponseNorm(5)
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 1.0)
    assert nn.AdaptiveMaxPool2d(2).return_indices is False
    assert all(list(layer.parameters()) == [] and layer.state_dict() == {} for layer in (m, a, lrn))


def test_return_indices_and_3d_input():
    x = tc.tensor(np.random.default_rng(0).permutation(3 * 6 * 6).reshape(3, 6, 6).astype(np.float32))
    y, idx = nn.MaxPool2d(2, return_indices=True)(x)
    assert y.shape == idx.shape == (3, 3, 3) and idx.dtype == np.int64
    np.testing.assert_array_equal(np.take_along_axis(x.numpy().reshape(3, -1), idx.numpy().reshape(3, -1), 1),
                                  y.numpy().reshape(3, -1))
    y2, idx2 = nn.AdaptiveMaxPool2d((2, 4), return_indices=True)(x)
    assert y2.shape == idx2.shape == (3, 2, 4)
    assert nn.AvgPool2d(3, 1, 1)(x).shape == (3, 6, 6)


@pytest.mark.parametrize("make,x_shape,message", [
    (lambda: nn.MaxPool2d(3, 2), (3, 224), r"^MaxPool2d\(kernel_size=3, stride=2, padding=0, dilation=1, "
                                           r"ceil_mode=False\): expected input of shape \(N, C, H, W\) or \(C, H, W\), "
                                           r"got \(3, 224\)"),
    (lambda: nn.MaxPool2d(5), (1, 3, 4, 4), r"^MaxPool2d\(kernel_size=5.*given input of shape \(1, 3, 4, 4\), "
                                            r"the computed output size is \(N, C, 0, 0\)"),
    # refused by the constructor already
    (lambda: nn.AvgPool2d(2, padding=2), (1, 3, 8, 8), r"^AvgPool2d\(kernel_size=2\): padding should be at most "
                                                       r"half of kernel_size, got padding=2"),
    (lambda: nn.AdaptiveAvgPool2d((0, 1)), (1, 3, 8, 8), r"^AdaptiveAvgPool2d\(\(0, 1\)\): output_size must be "
                                                         r"positive, got output_size=0"),
    (lambda: nn.LocalResponseNorm(3), (4, 4), r"^LocalResponseNorm\(3, alpha=0.0001, beta=0.75, k=1.0\): expected "
                                              r"input of 3"),
])
def test_errors_name_the_layer(make, x_shape, message):
    with pytest.raises(ValueError, match=message):
        make()(tc.randn(*x_shape))


def test_lrn_layer_in_a_sequential_backpropagates():
    net = nn.Sequential(nn.LocalResponseNorm(3, alpha=0.5, k=1.0), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1))
    x = tc.randn(2, 4, 6, 6, dtype=tc.float64, requires_grad=True)
    assert net(x).shape == (2, 4, 1, 1)
    assert tc.gradcheck(net, [x])
