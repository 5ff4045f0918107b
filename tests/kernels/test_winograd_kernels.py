"""Winograd F(2x2, 3x3) transforms: Numba twins against the NumPy reference, the forward against a direct float64
convolution, and the adjoint transforms as exact adjoints (what makes the backward pass the forward's derivative)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from tinyconv_kernels import winograd as WG, winograd_cpu as WGC

SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 4), st.integers(3, 9), st.integers(3, 9),
                   st.integers(0, 1))


def _direct(x, w, PH, PW, OH, OW):
    """y[n, k, i, j] = sum_{c, p, q} w[k, c, p, q] x[n, c, i + p - PH, j + q - PW] (zeros outside x), float64."""
    N, C, H, W = x.shape
    xp = np.zeros((N, C, OH + 2, OW + 2))
    h1, w1 = min(H, OH + 2 - PH), min(W, OW + 2 - PW)
    xp[:, :, PH:PH + h1, PW:PW + w1] = x[:, :, :h1, :w1]
    return sum(np.einsum("kc,nchw->nkhw", w[:, :, p, q], xp[:, :, p:p + OH, q:q + OW])
               for p in range(3) for q in range(3))


def _geometry(shape):
    N, C, K, H, W, P = shape
    return N, C, K, H, W, P, H + 2 * P - 2, W + 2 * P - 2


@settings(max_examples=40, deadline=None)
@given(shape=SHAPES, seed=st.integers(0, 100))
def test_forward_is_the_convolution_and_the_adjoints_are_adjoint(shape, seed):
    N, C, K, H, W, P, OH, OW = _geometry(shape)
    rng = np.random.default_rng(seed)
    x, w, gy = rng.standard_normal((N, C, H, W)), rng.standard_normal((K, C, 3, 3)), rng.standard_normal((N, K, OH, OW))
    TH, TW = WG.tiles(OH, OW)
    U = WG.winograd_filter_transform(w)
    for impl in ("numpy", "cpu"):
        f = lambda name: getattr(WG if impl == "numpy" else WGC, f"winograd_{name}_{impl}")  # noqa: E731
        V = f("input_transform")(x, P, P, TH, TW)
        y = f("output_transform")(np.matmul(U, V), N, OH, OW)
        np.testing.assert_allclose(y, _direct(x, w, P, P, OH, OW), rtol=1e-12, atol=1e-12)
        dM = f("output_transform_adjoint")(gy, TH, TW)
        dx = f("input_transform_adjoint")(np.matmul(U.transpose(0, 2, 1), dM), N, H, W, P, P, TH, TW)
        dw = WG.winograd_filter_transform_adjoint(np.matmul(dM, V.transpose(0, 2, 1)))
        # y is linear in x and in w: <dy, y> = <dx, x> = <dw, w> exactly when dx, dw are the adjoints' results
        inner = (gy * y).sum()
        assert (dx * x).sum() == pytest.approx(inner, rel=1e-12, abs=1e-12)
        assert (dw * w).sum() == pytest.approx(inner, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", [(2, 3, 4, 7, 6, 1), (1, 2, 2, 4, 5, 0), (3, 1, 2, 3, 3, 1)])
def test_numba_twins_match_the_reference(dtype, geometry):
    N, C, K, H, W, P, OH, OW = _geometry(geometry)
    rng = np.random.default_rng(1)
    x, gy = rng.standard_normal((N, C, H, W)).astype(dtype), rng.standard_normal((N, K, OH, OW)).astype(dtype)
    TH, TW = WG.tiles(OH, OW)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    V = WG.winograd_input_transform_numpy(x, P, P, TH, TW)
    np.testing.assert_allclose(WGC.winograd_input_transform_cpu(x, P, P, TH, TW), V, **tol)
    M = rng.standard_normal((16, K, N * TH * TW)).astype(dtype)
    np.testing.assert_allclose(WGC.winograd_output_transform_cpu(M, N, OH, OW),
                               WG.winograd_output_transform_numpy(M, N, OH, OW), **tol)
    np.testing.assert_allclose(WGC.winograd_output_transform_adjoint_cpu(gy, TH, TW),
                               WG.winograd_output_transform_adjoint_numpy(gy, TH, TW), **tol)
    dV = rng.standard_normal((16, C, N * TH * TW)).astype(dtype)
    np.testing.assert_allclose(WGC.winograd_input_transform_adjoint_cpu(dV, N, H, W, P, P, TH, TW),
                               WG.winograd_input_transform_adjoint_numpy(dV, N, H, W, P, P, TH, TW), **tol)
    for out in (WGC.winograd_input_transform_cpu(x, P, P, TH, TW), WGC.winograd_output_transform_cpu(M, N, OH, OW)):
        assert out.dtype == dtype


@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9), PH=st.integers(0, 2),
       PW=st.integers(0, 2), seed=st.integers(0, 100))
def test_numba_twins_match_the_reference_for_any_padding(N, C, H, W, PH, PW, seed):
    """Uneven and two-wide padding, planes narrower than a tile: the input transform's parity planes
    (``_parity_index``) place every element and every zero of the padding."""
    OH, OW = H + 2 * PH - 2, W + 2 * PW - 2
    assume(OH >= 1 and OW >= 1)
    TH, TW = WG.tiles(OH, OW)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    tol = dict(rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(WGC.winograd_input_transform_cpu(x, PH, PW, TH, TW),
                               WG.winograd_input_transform_numpy(x, PH, PW, TH, TW), **tol)
    np.testing.assert_allclose(WGC.winograd_input_transform_cpu(x[:, :, ::-1], PH, PW, TH, TW),  # not contiguous
                               WG.winograd_input_transform_numpy(x[:, :, ::-1], PH, PW, TH, TW), **tol)
    dV = rng.standard_normal((16, C, N * TH * TW))
    np.testing.assert_allclose(WGC.winograd_input_transform_adjoint_cpu(dV, N, H, W, PH, PW, TH, TW),
                               WG.winograd_input_transform_adjoint_numpy(dV, N, H, W, PH, PW, TH, TW), **tol)
