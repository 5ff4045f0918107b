"""nn.Conv2d: construction, repr, state_dict, PyTorch's initialisation, errors, and the PyTorch oracle."""
import math

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import backend, nn


@pytest.mark.parametrize("args, kwargs", [
    ((3, 64, 3), dict(padding=1)),
    ((3, 64, 11), dict(stride=4, padding=2)),
    ((8, 16, (1, 7)), dict(padding=(0, 3), bias=False)),
    ((8, 8, 3), dict(padding="same", groups=8, dilation=2)),
    ((4, 6, 2), dict(padding="valid", groups=2)),
])
def test_repr_and_state_dict_match_torch(torch, args, kwargs):
    ours, theirs = nn.Conv2d(*args, **kwargs), torch.nn.Conv2d(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        assert ours.state_dict()[k].shape == tuple(v.shape)


def test_state_dict_keys_and_shapes():
    m = nn.Conv2d(6, 12, (3, 5), groups=3)
    assert {k: v.shape for k, v in m.state_dict().items()} == {"weight": (12, 2, 3, 5), "bias": (12,)}
    assert list(nn.Conv2d(6, 12, 3, bias=False).state_dict()) == ["weight"]


def test_default_init_is_pytorch_kaiming_uniform():
    m = nn.Conv2d(16, 64, 3, groups=2)
    bound = 1 / math.sqrt(8 * 3 * 3)  # fan_in = in_channels/groups * KH * KW
    w, b = m.weight.numpy(), m.bias.numpy()
    assert w.dtype == b.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-bound, bound) has standard deviation bound/sqrt(3); 4608 samples pin it to within a few percent
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert abs(b.std() - bound / math.sqrt(3)) < 0.35 * bound


def test_parameters_are_filled_through_nn_init(monkeypatch):
    # allocation with empty + nn.init fills is what lets skip_init() make construction cheap
    calls = []
    monkeypatch.setattr(nn.init, "kaiming_uniform_", lambda t, a=0, **kw: calls.append(("kaiming", t.shape, a)))
    monkeypatch.setattr(nn.init, "uniform_", lambda t, lo, hi: calls.append(("uniform", t.shape, hi)))
    nn.Conv2d(4, 6, (3, 2), groups=2)
    assert calls == [("kaiming", (6, 2, 3, 2), math.sqrt(5)), ("uniform", (6,), 1 / math.sqrt(2 * 3 * 2))]
    monkeypatch.undo()
    before = backend.get_rng_state()["bit_generator"]
    with nn.init.skip_init():
        m = nn.Conv2d(64, 128, 3)
    assert backend.get_rng_state()["bit_generator"] == before  # no random numbers drawn
    assert m.weight.shape == (128, 64, 3, 3) and m.bias.shape == (128,) and m.weight.dtype == np.float32


def test_construction_errors():
    with pytest.raises(ValueError, match=r"groups=2 must divide in_channels \(3\)"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"groups=2 must divide .* out_channels \(5\)"):
        nn.Conv2d(4, 5, 3, groups=2)
    with pytest.raises(ValueError, match="not supported for strided"):
        nn.Conv2d(4, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(4, 4, 3, padding_mode="reflect")


def test_forward_error_names_the_layer():
    m = nn.Conv2d(3, 64, kernel_size=3)
    msg = r"^Conv2d\(3, 64, kernel_size=\(3, 3\)\): expected input of shape \(N, 3, H, W\), got \(8, 1, 28, 28\)$"
    with pytest.raises(ValueError, match=msg):
        m(tc.randn(8, 1, 28, 28))
    with pytest.raises(ValueError, match=r"^Conv2d\(3, 64, kernel_size=\(3, 3\)\): .*computed output size \(0, 0\)"):
        m(tc.randn(1, 3, 2, 2))
    with pytest.raises(TypeError,
                       match=r"Conv2d\(3, 64, kernel_size=\(3, 3\)\): expected input of dtype float32 .*got float64"):
        m(tc.randn(1, 3, 5, 5, dtype=np.float64))


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note about its own zero-padded copy
@pytest.mark.parametrize("args, kwargs", [
    ((4, 6, 3), dict(stride=2, padding=1)),
    ((4, 8, 3), dict(padding=1, groups=4)),                     # depthwise, multiplier 2
    ((4, 6, (2, 3)), dict(padding="same", dilation=(1, 2), groups=2)),
])
def test_forward_backward_match_torch(torch, kernels, args, kwargs):
    ours, theirs = nn.Conv2d(*args, **kwargs), torch.nn.Conv2d(*args, **kwargs)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 4, 9, 10)).astype(np.float32)
    tx, cx = torch.tensor(x, requires_grad=True), tc.tensor(x, requires_grad=True)
    ty, cy = theirs(tx), ours(cx)
    (ty ** 2).sum().backward()
    (cy ** 2).sum().backward()
    pairs = [(cy, ty), (cx.grad, tx.grad), (ours.weight.grad, theirs.weight.grad), (ours.bias.grad, theirs.bias.grad)]
    for a, t in pairs:
        want = t.detach().numpy()
        np.testing.assert_allclose(a.numpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
