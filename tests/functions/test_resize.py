"""``F.interpolate`` (nearest, bilinear with and without align_corners): a naive loop, float64 gradcheck over
Hypothesis-drawn shapes and scales, and PyTorch forward + backward."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tinyconv as tc
import tinyconv.nn.functional as F

MODES = [("nearest", None), ("bilinear", False), ("bilinear", True)]


def naive(x, OH, OW, mode, align_corners, scales):
    """Each output pixel from its source coordinates, one at a time (the formulas of resize.py's docstring)."""
    N, C, H, W = x.shape
    y = np.zeros((N, C, OH, OW))

    def src(o, n_in, n_out, scale):
        if mode == "nearest":
            return min(int(math.floor(o * scale)), n_in - 1)
        if align_corners:
            return o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        return max((o + 0.5) * scale - 0.5, 0.0)

    for oh in range(OH):
        for ow in range(OW):
            sh, sw = src(oh, H, OH, scales[0]), src(ow, W, OW, scales[1])
            if mode == "nearest":
                y[:, :, oh, ow] = x[:, :, sh, sw]
                continue
            h0, w0 = min(int(sh), H - 1), min(int(sw), W - 1)
            h1, w1 = min(h0 + 1, H - 1), min(w0 + 1, W - 1)
            a, b = sh - h0, sw - w0
            y[:, :, oh, ow] = ((1 - a) * (1 - b) * x[:, :, h0, w0] + (1 - a) * b * x[:, :, h0, w1]
                               + a * (1 - b) * x[:, :, h1, w0] + a * b * x[:, :, h1, w1])
    return y


@st.composite
def resize_case(draw):
    H, W = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if draw(st.booleans()):
        size = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
        return (1, 2, H, W), dict(size=size), size, (H / size[0], W / size[1])
    f = draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.5, 3.0]))
    OH, OW = int(math.floor(H * f)), int(math.floor(W * f))
    if OH < 1 or OW < 1:
        f, OH, OW = 2.0, 2 * H, 2 * W
    return (1, 2, H, W), dict(scale_factor=f), (OH, OW), (1 / f, 1 / f)


@pytest.mark.parametrize("mode,align_corners", MODES)
@given(case=resize_case(), seed=st.integers(0, 2**16))
def test_interpolate_forward_and_gradcheck(mode, align_corners, case, seed):
    shape, kw, (OH, OW), scales = case
    x = tc.tensor(np.random.default_rng(seed).standard_normal(shape), dtype=np.float64, requires_grad=True)
    y = F.interpolate(x, mode=mode, align_corners=align_corners, **kw)
    np.testing.assert_allclose(y.numpy(), naive(x.numpy(), OH, OW, mode, align_corners, scales), atol=1e-12)
    assert tc.gradcheck(lambda x: F.interpolate(x, mode=mode, align_corners=align_corners, **kw), [x])


@pytest.mark.parametrize("mode,align_corners", MODES)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # torch: a module, nothing to reset
@given(case=resize_case(), seed=st.integers(0, 2**16))
def test_interpolate_matches_torch(torch, mode, align_corners, case, seed):
    shape, kw, _, _ = case
    xn = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x = tc.tensor(xn, requires_grad=True)
    xt = torch.tensor(xn, requires_grad=True)
    y = F.interpolate(x, mode=mode, align_corners=align_corners, **kw)
    yt = torch.nn.functional.interpolate(xt, mode=mode, align_corners=align_corners, **kw)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    y.backward(g)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


def test_interpolate_refuses_bad_arguments():
    x = tc.randn(1, 1, 4, 4)
    for kw, msg in [(dict(), "exactly one of size and scale_factor"),
                    (dict(size=2, scale_factor=2), "exactly one of size and scale_factor"),
                    (dict(size=2, mode="bicubic"), "bicubic"),
                    (dict(size=2, align_corners=True), "align_corners applies to mode='bilinear'"),
                    (dict(scale_factor=0.1), "must be positive")]:
        with pytest.raises(ValueError, match=msg):
            F.interpolate(x, **kw)
    with pytest.raises(ValueError, match="4-d input"):
        F.interpolate(tc.randn(4, 4), size=2)


def test_one_hot_checks_its_input():
    np.testing.assert_array_equal(F.one_hot(tc.tensor([2, 0]), 3).numpy(), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        F.one_hot(tc.tensor([3]), 3)
    with pytest.raises(TypeError, match="integer tensor"):
        F.one_hot(tc.tensor([1.0]), 3)
