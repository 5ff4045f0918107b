"""F.conv2d: forward against a naive loop, float64 gradcheck over drawn configurations, PyTorch oracle."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import backend
from tinyconv import functional as F
import tinyconv_kernels.conv2d as conv_kernels

# the `kernels` fixture switches a global mode once per test, so sharing it across examples is safe
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                             HealthCheck.data_too_large])


def naive_conv2d(x, w, b, stride, padding, dilation, groups):
    """The definition, one output element at a time (symmetric integer padding)."""
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    OH, OW = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1, (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    y = np.zeros((N, K, OH, OW))
    for n, k, oh, ow in np.ndindex(N, K, OH, OW):
        g = k // (K // groups)
        patch = xp[n, g * Cg:(g + 1) * Cg, oh * SH:oh * SH + DH * (KH - 1) + 1:DH,
                   ow * SW:ow * SW + DW * (KW - 1) + 1:DW]
        y[n, k, oh, ow] = (patch * w[k]).sum() + (0 if b is None else b[k])
    return y


@st.composite
def conv_configs(draw, max_kernel=7):
    """Tiny convolutions: kernel 1-7 (rectangular too), stride 1-3, padding 0-3, dilation 1-2, groups | C."""
    KH, KW = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH, PW = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    DH, DW = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    G = draw(st.integers(1, 3))
    Cg, Kg = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    # the smallest input with at least one output, plus a little
    H = max(1, DH * (KH - 1) + 1 - 2 * PH) + draw(st.integers(0, 2))
    W = max(1, DW * (KW - 1) + 1 - 2 * PW) + draw(st.integers(0, 2))
    return dict(N=draw(st.integers(1, 2)), C=G * Cg, K=G * Kg, H=H, W=W, kernel=(KH, KW), stride=(SH, SW),
                padding=(PH, PW), dilation=(DH, DW), groups=G, bias=draw(st.booleans()))


def _operands(cfg, dtype, requires_grad=False):
    x = tc.randn(cfg["N"], cfg["C"], cfg["H"], cfg["W"], dtype=dtype, requires_grad=requires_grad)
    w = tc.randn(cfg["K"], cfg["C"] // cfg["groups"], *cfg["kernel"], dtype=dtype, requires_grad=requires_grad)
    b = tc.randn(cfg["K"], dtype=dtype, requires_grad=requires_grad) if cfg["bias"] else None
    return x, w, b


def _hyper(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])


@fixture_ok
@given(cfg=conv_configs())
def test_forward_matches_naive_loop(kernels, cfg):
    x, w, b = _operands(cfg, np.float64)
    y = F.conv2d(x, w, b, **_hyper(cfg))
    want = naive_conv2d(x.numpy(), w.numpy(), None if b is None else b.numpy(), cfg["stride"], cfg["padding"],
                        cfg["dilation"], cfg["groups"])
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-10, atol=1e-10)


@given(cfg=conv_configs())
def test_gradcheck(cfg):
    # On the NumPy reference kernels: gradcheck makes thousands of tiny calls, where the parallel Numba
    # kernels only add thread start-up; the Numba backward is held to the reference in test_matches_torch
    # and in tests/kernels.
    x, w, b = _operands(cfg, np.float64, requires_grad=True)
    inputs = [x, w] + ([b] if b is not None else [])
    # element by element where that is cheap; random directions for the larger drawn inputs
    directions = None if max(x.size, w.size) <= 400 else 12
    with backend.use_kernels("numpy"):
        assert tc.gradcheck(lambda *a: F.conv2d(*a, **_hyper(cfg)), inputs, directions=directions)


def test_float32_stays_float32():
    x = tc.randn(2, 4, 6, 6, requires_grad=True)
    w = tc.randn(6, 2, 3, 3, requires_grad=True)
    b = tc.randn(6, requires_grad=True)
    y = F.conv2d(x, w, b, padding=1, groups=2)
    y.sum().backward()
    assert y.dtype == np.float32 and y.data.flags.c_contiguous
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32


def test_same_padding_keeps_size_and_pads_extra_on_the_bottom_right():
    x = tc.randn(1, 2, 6, 5, dtype=np.float64)
    w = tc.randn(3, 2, 4, 2, dtype=np.float64)  # even kernel: total padding 3 rows (1 top, 2 bottom), 1 column
    y = F.conv2d(x, w, padding="same")
    assert y.shape == (1, 3, 6, 5)
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 2), (0, 1)))
    want = naive_conv2d(xp, w.numpy(), None, (1, 1), (0, 0), (1, 1), 1)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12)
    assert F.conv2d(x, w, padding="valid").shape == (1, 3, 3, 4)


@pytest.mark.parametrize("groups, bias", [(1, True), (2, False), (3, True)])
def test_a_window_covering_the_whole_image_is_a_dense_layer(groups, bias, monkeypatch):
    """LeNet-5's C5: OH = OW = 1, no padding: the layer runs as a GEMM on x itself, never through im2col."""
    monkeypatch.setattr(conv_kernels._Conv, "im2col", lambda *a: pytest.fail("im2col called for a full-window layer"))
    monkeypatch.setattr(conv_kernels._Conv, "input_grad",
                        lambda *a: pytest.fail("col2im path taken for a full-window layer"))
    cfg = dict(N=3, C=2 * groups, K=2 * groups, H=4, W=3, kernel=(4, 3), stride=(2, 1), padding=(0, 0),
               dilation=(1, 1), groups=groups, bias=bias)
    x, w, b = _operands(cfg, np.float64, requires_grad=True)
    y = F.conv2d(x, w, b, **_hyper(cfg))
    want = naive_conv2d(x.numpy(), w.numpy(), None if b is None else b.numpy(), cfg["stride"], cfg["padding"],
                        cfg["dilation"], groups)
    assert y.shape == (3, 2 * groups, 1, 1) and y.data.flags.c_contiguous
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)
    inputs = [x, w] + ([b] if b is not None else [])
    assert tc.gradcheck(lambda *a: F.conv2d(*a, **_hyper(cfg)), inputs)
    y.backward(np.ones(y.shape))
    assert x.grad.shape == x.shape and x.grad.data.flags.c_contiguous and w.grad.shape == w.shape


def test_unbatched_input():
    x, w = tc.randn(3, 5, 5), tc.randn(4, 3, 3, 3)
    np.testing.assert_allclose(F.conv2d(x, w).numpy(), F.conv2d(x.reshape(1, 3, 5, 5), w).numpy()[0])


def test_groups_equal_to_channels_runs_the_depthwise_kernel(monkeypatch):
    """The CPU conv2d kernel picks the direct kernels for depthwise and thin grouped layers (the NumPy reference
    is im2col + GEMM for every layer); the GPU's takes the depthwise one only."""
    strategy = conv_kernels.strategy
    assert strategy((1, 4, 5, 5), (8, 1, 3, 3), 4, (0, 0), (3, 3), "cpu") == "depthwise"
    assert strategy((1, 4, 5, 5), (8, 1, 3, 3), 4, (0, 0), (3, 3), "cuda") == "depthwise"
    assert strategy((1, 4, 5, 5), (8, 2, 3, 3), 2, (0, 0), (3, 3), "cpu") == "grouped"  # few taps: direct
    assert strategy((1, 4, 5, 5), (8, 2, 3, 3), 2, (0, 0), (3, 3), "cuda") == "gemm"
    assert strategy((1, 1, 5, 5), (2, 1, 3, 3), 1, (0, 0), (2, 2), "cpu", (2, 2)) == "gemm"
    assert strategy((1, 1, 5, 5), (2, 1, 3, 3), 1, (0, 0), (3, 3), "cpu") == "direct"  # few channels: direct
    assert strategy((1, 1, 5, 5), (2, 1, 3, 3), 1, (0, 0), (3, 3), "cuda") == "gemm"
    calls = []
    kernel = backend.get_kernel("depthwise_conv2d", np.zeros(1))
    monkeypatch.setattr(backend, "_cpu_wrappers", {("depthwise_conv2d", "cpu"): lambda *a: calls.append(1) or kernel(*a)})
    with backend.use_kernels("numba"):
        F.conv2d(tc.randn(1, 4, 5, 5), tc.randn(8, 1, 3, 3), groups=4)
    assert calls == [1]


def test_errors_name_the_problem():
    x = tc.randn(8, 1, 28, 28)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(8, 1, 28, 28\)"):
        F.conv2d(x, tc.randn(64, 3, 3, 3))
    with pytest.raises(ValueError, match=r"computed output size \(-1, -1\)"):
        F.conv2d(tc.randn(1, 1, 5, 5), tc.randn(2, 1, 7, 7))
    with pytest.raises(ValueError, match=r"computed output size \(-1, 3\)"):
        F.conv2d(tc.randn(1, 1, 3, 5), tc.randn(2, 1, 3, 3), dilation=(2, 1))
    with pytest.raises(TypeError, match="input dtype float64 does not match weight dtype float32"):
        F.conv2d(tc.randn(1, 1, 5, 5, dtype=np.float64), tc.randn(2, 1, 3, 3))
    with pytest.raises(ValueError, match="not supported for strided"):
        F.conv2d(tc.randn(1, 1, 5, 5), tc.randn(2, 1, 3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match=r"out_channels \(5\) must be divisible by groups \(2\)"):
        F.conv2d(tc.randn(1, 4, 5, 5), tc.randn(5, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match="bias of shape"):
        F.conv2d(tc.randn(1, 1, 5, 5), tc.randn(2, 1, 3, 3), tc.randn(3))


TORCH_CASES = [
    dict(C=3, K=5, kernel=(3, 3)),
    dict(C=4, K=6, kernel=(3, 3), stride=2, padding=1),
    dict(C=4, K=6, kernel=(3, 2), stride=(2, 1), padding=(1, 0), groups=2),
    dict(C=6, K=6, kernel=(3, 3), padding=1, groups=3),
    dict(C=4, K=4, kernel=(3, 3), padding=1, groups=4),                 # depthwise
    dict(C=3, K=6, kernel=(5, 5), stride=2, padding=2, groups=3),       # depthwise, multiplier 2
    dict(C=3, K=4, kernel=(4, 4), padding="same"),
    dict(C=2, K=4, kernel=(2, 5), padding="same", dilation=2, groups=2, bias=False),
    dict(C=2, K=4, kernel=(2, 4), padding="same", groups=2),            # depthwise 'same', even kernel
    dict(C=3, K=4, kernel=(3, 3), padding=2, dilation=2),
    dict(C=3, K=4, kernel=(1, 7), padding=(0, 3)),
    dict(C=3, K=4, kernel=(7, 1), padding=(3, 0), stride=(1, 2)),
    dict(C=8, K=8, kernel=(1, 1), bias=False),
    dict(C=4, K=6, kernel=(9, 8)),                                      # one window, the whole image
    dict(C=4, K=6, kernel=(9, 8), stride=2, groups=2, bias=False),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note about its own zero-padded copy
@pytest.mark.parametrize("case", TORCH_CASES)
def test_matches_torch(torch, kernels, case):
    case = dict(case)
    C, K, (KH, KW), bias = case.pop("C"), case.pop("K"), case.pop("kernel"), case.pop("bias", True)
    groups = case.get("groups", 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, C, 9, 8)).astype(np.float32)
    w = rng.standard_normal((K, C // groups, KH, KW)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32) if bias else None
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ty = torch.nn.functional.conv2d(tx, tw, tb, **case)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(gy))
    cx, cw = tc.tensor(x, requires_grad=True), tc.tensor(w, requires_grad=True)
    cb = tc.tensor(b, requires_grad=True) if bias else None
    cy = F.conv2d(cx, cw, cb, **case)
    cy.backward(gy)
    pairs = [(cy, ty), (cx.grad, tx.grad), (cw.grad, tw.grad)] + ([(cb.grad, tb.grad)] if bias else [])
    for ours, theirs in pairs:
        want = theirs.detach().numpy()
        assert ours.dtype == np.float32 and ours.shape == want.shape
        np.testing.assert_allclose(ours.numpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
