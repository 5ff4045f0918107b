"""F.depthwise_conv2d: forward against a naive loop, gradcheck, channel multipliers, PyTorch oracle."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import backend
from tinyconv import functional as F


def naive_depthwise(x, w, b, stride, padding, dilation):
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    N, C, H, W = x.shape
    K, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    OH, OW = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1, (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    y = np.zeros((N, K, OH, OW))
    for n, k, oh, ow in np.ndindex(N, K, OH, OW):
        window = xp[n, k // (K // C), oh * SH:oh * SH + DH * (KH - 1) + 1:DH, ow * SW:ow * SW + DW * (KW - 1) + 1:DW]
        y[n, k, oh, ow] = (window * w[k, 0]).sum() + (0 if b is None else b[k])
    return y


@st.composite
def depthwise_configs(draw):
    KH, KW = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    S = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    P = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    D = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    H = max(1, D[0] * (KH - 1) + 1 - 2 * P[0]) + draw(st.integers(0, 2))
    W = max(1, D[1] * (KW - 1) + 1 - 2 * P[1]) + draw(st.integers(0, 2))
    C, M = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (draw(st.integers(1, 2)), C, H, W), (C * M, 1, KH, KW), draw(st.booleans()), dict(
        stride=S, padding=P, dilation=D)


@given(cfg=depthwise_configs())
def test_forward_matches_naive_loop_on_both_kernel_paths(cfg):
    xs, ws, bias, hyper = cfg
    x, w = tc.randn(*xs, dtype=np.float64), tc.randn(*ws, dtype=np.float64)
    b = tc.randn(ws[0], dtype=np.float64) if bias else None
    want = naive_depthwise(x.numpy(), w.numpy(), None if b is None else b.numpy(), **hyper)
    for mode in ("numpy", "numba"):
        with backend.use_kernels(mode):
            np.testing.assert_allclose(F.depthwise_conv2d(x, w, b, **hyper).numpy(), want, rtol=1e-10, atol=1e-10)


@given(cfg=depthwise_configs())
def test_gradcheck(cfg):
    # NumPy reference kernels (see tests/functions/test_conv.py::test_gradcheck for why)
    xs, ws, bias, hyper = cfg
    x = tc.randn(*xs, dtype=np.float64, requires_grad=True)
    w = tc.randn(*ws, dtype=np.float64, requires_grad=True)
    inputs = [x, w] + ([tc.randn(ws[0], dtype=np.float64, requires_grad=True)] if bias else [])
    with backend.use_kernels("numpy"):
        assert tc.gradcheck(lambda *a: F.depthwise_conv2d(*a, **hyper), inputs)


def test_equals_grouped_conv2d_and_runs_for_one_channel(kernels):
    x, w = tc.randn(2, 1, 6, 6, dtype=np.float64), tc.randn(3, 1, 3, 3, dtype=np.float64)
    y = F.depthwise_conv2d(x, w, padding=1)  # C == 1: still the depthwise kernel
    np.testing.assert_allclose(y.numpy(), F.conv2d(x, w, padding=1).numpy(), rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match=r"expected a weight of shape \(M\*4, 1, KH, KW\)"):
        F.depthwise_conv2d(tc.randn(1, 4, 5, 5), tc.randn(6, 1, 3, 3))
    with pytest.raises(TypeError, match="does not match weight dtype"):
        F.depthwise_conv2d(tc.randn(1, 2, 5, 5), tc.randn(2, 1, 3, 3, dtype=np.float64))


@pytest.mark.parametrize("M, kernel, hyper", [
    (1, (3, 3), dict(padding=1)),
    (2, (3, 3), dict(stride=2, padding=1)),
    (3, (5, 3), dict(padding=(2, 1), dilation=(1, 2))),
    (1, (4, 4), dict(padding="same")),
    (2, (7, 7), dict(stride=2, padding=3)),
])
def test_matches_torch(torch, kernels, M, kernel, hyper):
    rng = np.random.default_rng(0)
    C = 3
    x = rng.standard_normal((2, C, 10, 9)).astype(np.float32)
    w = rng.standard_normal((C * M, 1) + kernel).astype(np.float32)
    b = rng.standard_normal(C * M).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, groups=C, **hyper)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(gy))
    cx, cw, cb = (tc.tensor(a, requires_grad=True) for a in (x, w, b))
    cy = F.depthwise_conv2d(cx, cw, cb, **hyper)
    cy.backward(gy)
    for ours, theirs in [(cy, ty), (cx.grad, tx.grad), (cw.grad, tw.grad), (cb.grad, tb.grad)]:
        want = theirs.detach().numpy()
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours.numpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
