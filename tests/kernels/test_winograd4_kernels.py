"""Winograd F(4x4, 3x3) transforms: the matrices, the Numba twins against the NumPy reference (float32 and float64,
any padding, cropped last tiles, non-contiguous input), the forward against a direct float64 convolution, and the
adjoint transforms as exact adjoints (what makes the backward pass the forward's derivative)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from test_winograd_kernels import _direct, _geometry  # the direct float64 convolution, the test geometry
from tinyconv_kernels import winograd4 as WG, winograd4_cpu as WGC

SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 4), st.integers(3, 14), st.integers(3, 14),
                   st.integers(0, 2))


def _impl(impl, name):
    return getattr(WG if impl == "numpy" else WGC, f"winograd4_{name}_{impl}")


def test_one_dimensional_f43_is_the_correlation():
    """A^T [(G g) (.) (B^T d)] = the 3-tap correlation of a 6-long signal, for every basis filter and signal."""
    for k in range(3):
        for i in range(6):
            g, d = np.eye(3)[k], np.eye(6)[i]
            y = WG.AT4 @ ((WG.G4 @ g) * (WG.BT4 @ d))
            np.testing.assert_allclose(y, [d[j:j + 3] @ g for j in range(4)], atol=1e-15)
    assert WG.tiles4(1, 1) == (1, 1) and WG.tiles4(4, 5) == (1, 2) and WG.tiles4(56, 9) == (14, 3)


@settings(max_examples=40, deadline=None)
@given(shape=SHAPES, seed=st.integers(0, 100))
def test_forward_is_the_convolution_and_the_adjoints_are_adjoint(shape, seed):
    N, C, K, H, W, P, OH, OW = _geometry(shape)
    assume(OH >= 1 and OW >= 1)
    rng = np.random.default_rng(seed)
    x, w, gy = rng.standard_normal((N, C, H, W)), rng.standard_normal((K, C, 3, 3)), rng.standard_normal((N, K, OH, OW))
    TH, TW = WG.tiles4(OH, OW)
    U = WG.winograd4_filter_transform(w)
    for impl in ("numpy", "cpu"):
        V = _impl(impl, "input_transform")(x, P, P, TH, TW)
        y = _impl(impl, "output_transform")(np.matmul(U, V), N, OH, OW)
        np.testing.assert_allclose(y, _direct(x, w, P, P, OH, OW), rtol=1e-11, atol=1e-11)
        dM = _impl(impl, "output_transform_adjoint")(gy, TH, TW)
        dx = _impl(impl, "input_transform_adjoint")(np.matmul(U.transpose(0, 2, 1), dM), N, H, W, P, P, TH, TW)
        dw = WG.winograd4_filter_transform_adjoint(np.matmul(dM, V.transpose(0, 2, 1)))
        # y is linear in x and in w: <dy, y> = <dx, x> = <dw, w> exactly when dx, dw are the adjoints' results
        inner = (gy * y).sum()
        assert (dx * x).sum() == pytest.approx(inner, rel=1e-11, abs=1e-11)
        assert (dw * w).sum() == pytest.approx(inner, rel=1e-11, abs=1e-11)


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 2), C=st.integers(1, 3), K=st.integers(1, 3), H=st.integers(1, 13), W=st.integers(1, 13),
       PH=st.integers(0, 2), PW=st.integers(0, 2), seed=st.integers(0, 100))
def test_each_transform_and_its_adjoint_are_adjoint(N, C, K, H, W, PH, PW, seed):
    """<T a, b> == <a, T^T b> in float64 for each transform on its own, Numba and reference alike."""
    OH, OW = H + 2 * PH - 2, W + 2 * PW - 2
    assume(OH >= 1 and OW >= 1)
    TH, TW = WG.tiles4(OH, OW)
    rng = np.random.default_rng(seed)
    x, V = rng.standard_normal((N, C, H, W)), rng.standard_normal((36, C, N * TH * TW))
    M, gy = rng.standard_normal((36, K, N * TH * TW)), rng.standard_normal((N, K, OH, OW))
    w, U = rng.standard_normal((K, C, 3, 3)), rng.standard_normal((36, K, C))
    for impl in ("numpy", "cpu"):
        lhs = (_impl(impl, "input_transform")(x, PH, PW, TH, TW) * V).sum()
        rhs = (x * _impl(impl, "input_transform_adjoint")(V, N, H, W, PH, PW, TH, TW)).sum()
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-10)
        lhs = (_impl(impl, "output_transform")(M, N, OH, OW) * gy).sum()
        assert lhs == pytest.approx((M * _impl(impl, "output_transform_adjoint")(gy, TH, TW)).sum(), rel=1e-12,
                                    abs=1e-10)
    lhs = (WG.winograd4_filter_transform(w) * U).sum()
    assert lhs == pytest.approx((w * WG.winograd4_filter_transform_adjoint(U)).sum(), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", [(2, 3, 4, 7, 6, 1), (1, 2, 2, 4, 5, 0), (3, 1, 2, 3, 3, 1),
                                      (2, 2, 3, 11, 13, 1), (1, 3, 2, 16, 9, 2)])
def test_numba_twins_match_the_reference(dtype, geometry):
    N, C, K, H, W, P, OH, OW = _geometry(geometry)
    rng = np.random.default_rng(1)
    x, gy = rng.standard_normal((N, C, H, W)).astype(dtype), rng.standard_normal((N, K, OH, OW)).astype(dtype)
    TH, TW = WG.tiles4(OH, OW)
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-12)
    V = WG.winograd4_input_transform_numpy(x, P, P, TH, TW)
    np.testing.assert_allclose(WGC.winograd4_input_transform_cpu(x, P, P, TH, TW), V, **tol)
    M = rng.standard_normal((36, K, N * TH * TW)).astype(dtype)
    np.testing.assert_allclose(WGC.winograd4_output_transform_cpu(M, N, OH, OW),
                               WG.winograd4_output_transform_numpy(M, N, OH, OW), **tol)
    np.testing.assert_allclose(WGC.winograd4_output_transform_adjoint_cpu(gy, TH, TW),
                               WG.winograd4_output_transform_adjoint_numpy(gy, TH, TW), **tol)
    dV = rng.standard_normal((36, C, N * TH * TW)).astype(dtype)
    np.testing.assert_allclose(WGC.winograd4_input_transform_adjoint_cpu(dV, N, H, W, P, P, TH, TW),
                               WG.winograd4_input_transform_adjoint_numpy(dV, N, H, W, P, P, TH, TW), **tol)
    outs = (WGC.winograd4_input_transform_cpu(x, P, P, TH, TW), WGC.winograd4_output_transform_cpu(M, N, OH, OW),
            WGC.winograd4_output_transform_adjoint_cpu(gy, TH, TW),
            WGC.winograd4_input_transform_adjoint_cpu(dV, N, H, W, P, P, TH, TW))
    assert all(out.dtype == dtype for out in outs)


@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 13), W=st.integers(1, 13), PH=st.integers(0, 2),
       PW=st.integers(0, 2), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 100))
def test_numba_twins_match_the_reference_for_any_padding(N, C, H, W, PH, PW, dtype, seed):
    """Uneven and two-wide padding, planes narrower than a tile, last tiles cropped: the phase planes
    (``_phase_index``, ``_scatter_index``, ``_deinterleave_index``) place every element and every zero."""
    OH, OW = H + 2 * PH - 2, W + 2 * PW - 2
    assume(OH >= 1 and OW >= 1)
    TH, TW = WG.tiles4(OH, OW)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(WGC.winograd4_input_transform_cpu(x, PH, PW, TH, TW),
                               WG.winograd4_input_transform_numpy(x, PH, PW, TH, TW), **tol)
    np.testing.assert_allclose(WGC.winograd4_input_transform_cpu(x[:, :, ::-1], PH, PW, TH, TW),  # not contiguous
                               WG.winograd4_input_transform_numpy(x[:, :, ::-1], PH, PW, TH, TW), **tol)
    dV = rng.standard_normal((36, C, N * TH * TW)).astype(dtype)
    np.testing.assert_allclose(WGC.winograd4_input_transform_adjoint_cpu(dV, N, H, W, PH, PW, TH, TW),
                               WG.winograd4_input_transform_adjoint_numpy(dV, N, H, W, PH, PW, TH, TW), **tol)
    gy = rng.standard_normal((N, C, OH, OW)).astype(dtype)[..., ::-1]  # not contiguous
    np.testing.assert_allclose(WGC.winograd4_output_transform_adjoint_cpu(gy, TH, TW),
                               WG.winograd4_output_transform_adjoint_numpy(gy, TH, TW), **tol)
    M = rng.standard_normal((36, C, N * TH * TW)).astype(dtype)
    np.testing.assert_allclose(WGC.winograd4_output_transform_cpu(M, N, OH, OW),
                               WG.winograd4_output_transform_numpy(M, N, OH, OW), **tol)
