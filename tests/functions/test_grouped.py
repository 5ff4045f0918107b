"""F.grouped_conv2d and conv2d's dispatch to it: naive loop, gradcheck, Numba vs NumPy, PyTorch oracle."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import backend
from tinyconv import functional as F
from tinyconv.functions import conv as conv_module
from tinyconv.functions import grouped as grouped_module
import tinyconv_kernels.conv2d as conv_kernels


def naive_grouped(x, w, b, stride, padding, dilation, groups):
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    Kg = K // groups
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    OH, OW = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1, (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    y = np.zeros((N, K, OH, OW))
    for n, k, oh, ow in np.ndindex(N, K, OH, OW):
        c0 = (k // Kg) * Cg
        window = xp[n, c0:c0 + Cg, oh * SH:oh * SH + DH * (KH - 1) + 1:DH, ow * SW:ow * SW + DW * (KW - 1) + 1:DW]
        y[n, k, oh, ow] = (window * w[k]).sum() + (0 if b is None else b[k])
    return y


@st.composite
def grouped_configs(draw):
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    S = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    P = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    D = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    H = max(1, D[0] * (KH - 1) + 1 - 2 * P[0]) + draw(st.integers(0, 2))
    W = max(1, D[1] * (KW - 1) + 1 - 2 * P[1]) + draw(st.integers(0, 2))
    G, Cg, Kg = draw(st.integers(2, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    return (draw(st.integers(1, 2)), G * Cg, H, W), (G * Kg, Cg, KH, KW), draw(st.booleans()), dict(
        stride=S, padding=P, dilation=D, groups=G)


def _operands(xs, ws, bias, dtype=np.float64, requires_grad=False):
    x = tc.randn(*xs, dtype=dtype, requires_grad=requires_grad)
    w = tc.randn(*ws, dtype=dtype, requires_grad=requires_grad)
    b = tc.randn(ws[0], dtype=dtype, requires_grad=requires_grad) if bias else None
    return x, w, b


@given(cfg=grouped_configs())
def test_forward_matches_naive_loop_on_both_kernel_paths(cfg):
    xs, ws, bias, hyper = cfg
    x, w, b = _operands(xs, ws, bias)
    want = naive_grouped(x.numpy(), w.numpy(), None if b is None else b.numpy(), **hyper)
    for mode in ("numpy", "numba"):
        with backend.use_kernels(mode):
            got = F.grouped_conv2d(x, w, b, **hyper).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@given(cfg=grouped_configs())
def test_gradcheck(cfg):
    # NumPy reference kernels (see tests/functions/test_conv.py::test_gradcheck for why)
    xs, ws, bias, hyper = cfg
    inputs = [a for a in _operands(xs, ws, bias, requires_grad=True) if a is not None]
    with backend.use_kernels("numpy"):
        assert tc.gradcheck(lambda *a: F.grouped_conv2d(*a, **hyper), inputs)


def _forward_backward(fn, x, w, b, gy):
    leaves = [None if a is None else tc.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = fn(*leaves)
    y.backward(gy)
    return [y.numpy()] + [None if t is None else t.grad.numpy() for t in leaves]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_backward_matches_reference(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 12, 9, 8)).astype(dtype)
    w = rng.standard_normal((8, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    gy = rng.standard_normal((2, 8, 5, 8)).astype(dtype)
    hyper = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=4)
    results = {}
    for mode in ("numpy", "numba"):
        with backend.use_kernels(mode):
            results[mode] = _forward_backward(lambda *a: F.grouped_conv2d(*a, **hyper), x, w, b, gy)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for got, want in zip(results["numba"], results["numpy"]):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("G, Cg, Kg, kernel, hyper", [
    (4, 4, 4, (3, 3), dict(padding=1)),                      # ResNeXt 32x4d's block, fewer groups
    (4, 4, 4, (3, 3), dict(stride=2, padding=1)),            # its downsampling block
    (3, 2, 5, (3, 2), dict(padding=(1, 0), dilation=(2, 1))),
    (2, 3, 2, (4, 4), dict(padding="same")),
    (2, 2, 2, (1, 1), dict(stride=(1, 2))),
])
def test_matches_torch(torch, kernels, G, Cg, Kg, kernel, hyper):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, G * Cg, 10, 9)).astype(np.float32)
    w = rng.standard_normal((G * Kg, Cg) + kernel).astype(np.float32)
    b = rng.standard_normal(G * Kg).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, groups=G, **hyper)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(gy))
    ours = _forward_backward(lambda *a: F.grouped_conv2d(*a, groups=G, **hyper), x, w, b, gy)
    for got, theirs in zip(ours, (ty, tx.grad, tw.grad, tb.grad)):
        want = theirs.detach().numpy()
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("C, K, groups, kernel, direct", [
    (16, 16, 4, 3, True),     # Cg*KH*KW = 36: ResNeXt's 32x4d
    (8, 8, 2, 3, True),       # 36
    (32, 32, 2, 3, True),     # 144: the largest taken
    (64, 64, 2, 3, False),    # 288: the per-group GEMM is wide enough for BLAS
    (8, 8, 1, 3, False),      # no groups
    (8, 16, 8, 3, False),     # depthwise: its own kernel
])
def test_conv2d_dispatch(monkeypatch, C, K, groups, kernel, direct):
    """conv2d takes the direct kernels exactly for small groups; both paths give the same results."""
    calls = []
    monkeypatch.setattr(conv_kernels._Conv, "__init__", lambda self, *a, f=conv_kernels._Conv.__init__, **k:
                        f(self, *a, **k) or calls.append(self.how == "grouped"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, C, 6, 6))
    w = rng.standard_normal((K, C // groups, kernel, kernel))
    gy = rng.standard_normal((2, K, 6, 6))
    got = _forward_backward(lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=groups), x, w, None, gy)
    assert any(calls) == direct
    if groups > 1:
        via = conv_module.Conv2dFn if direct else grouped_module.GroupedConv2dFn  # the path not taken
        other = _forward_backward(lambda x, w, b: via.apply(x, w, b, stride=(1, 1), padding=(1, 1), dilation=(1, 1),
                                                            out_size=(6, 6), groups=groups), x, w, None, gy)
        for a, b in zip(got[:3], other[:3]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_unbatched_and_errors():
    x, w = tc.randn(4, 5, 5, dtype=np.float64), tc.randn(6, 2, 3, 3, dtype=np.float64)
    y = F.grouped_conv2d(x, w, groups=2)
    np.testing.assert_allclose(y.numpy(), F.conv2d(x, w, groups=2).numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 4, H, W\)"):
        F.grouped_conv2d(tc.randn(1, 6, 5, 5), tc.randn(6, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match="must be divisible by groups"):
        F.grouped_conv2d(tc.randn(1, 4, 5, 5), tc.randn(5, 2, 3, 3), groups=2)
    with pytest.raises(TypeError, match="does not match weight dtype"):
        F.grouped_conv2d(tc.randn(1, 4, 5, 5), tc.randn(6, 2, 3, 3, dtype=np.float64), groups=2)
