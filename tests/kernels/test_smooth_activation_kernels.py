"""The smooth activations' kernels (sigmoid, SiLU, GELU) and the float32 erf: the Numba loops against float64
evaluations with the math module, and against the NumPy references."""
import math

import numpy as np
import pytest

from tinyconv_kernels import activation as A
from tinyconv_kernels import special

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-30, 3e38, -3e38, 20.0, -20.0, 89.0,
                    -89.0, 104.0, -104.0, 120.0, -120.0])


def _ulps(got32, exact):
    """Distance of float32 results from exact (float64) values, in float32 ulps of the exact value."""
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(got32.astype(np.float64) - exact) / ulp


def _sample():
    rng = np.random.default_rng(0)
    return np.concatenate([np.linspace(-30, 30, 600_001, dtype=np.float32),
                           rng.standard_normal(200_000).astype(np.float32) * 3,
                           np.geomspace(1e-38, 1.0, 20_000).astype(np.float32),
                           -np.geomspace(1e-38, 1.0, 20_000).astype(np.float32)])


def _sigmoid_exact(x):
    return np.array([1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v)) for v in x.tolist()])


def _phi_exact(x):
    """Phi(x) in float64, from erfc on both sides (no cancellation)."""
    return np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x.tolist()])


def test_float32_erf_is_correctly_rounded():
    x = np.concatenate([np.linspace(-6, 6, 2_000_001, dtype=np.float32),
                        np.geomspace(1e-38, 1.0, 50_000).astype(np.float32)])
    x = np.concatenate([x, -x])
    y = special.erf_cpu(x)
    exact = np.array([math.erf(v) for v in x.astype(np.float64).tolist()])
    assert y.dtype == np.float32 and _ulps(y, exact).max() <= 0.5 + 1e-6
    with np.errstate(invalid="ignore"):
        s = special.erf_cpu(SPECIAL.astype(np.float32))
    np.testing.assert_array_equal(s, np.array([math.erf(v) if not np.isnan(v) else v for v in
                                               SPECIAL.astype(np.float32).tolist()], np.float32))
    assert np.signbit(s[4]) and not np.signbit(s[3])


def test_float32_sigmoid_and_silu_within_an_ulp_of_exact():
    x = _sample()
    exact = _sigmoid_exact(x.astype(np.float64))
    s = A.sigmoid_cpu(x)
    assert s.dtype == np.float32 and _ulps(s, exact).max() <= 1.0
    y = A.silu_forward_cpu(x)
    assert _ulps(y, x.astype(np.float64) * exact).max() <= 1.5
    # the reference (NumPy's float32 exp and division) is within a few ulp of the same exact values
    assert _ulps(A.sigmoid_numpy(x), exact).max() <= 4


def test_float32_gelu_accurate_in_both_tails():
    x = _sample()
    phi = _phi_exact(x.astype(np.float64))
    y, cdf = A.gelu_forward_cpu(x)
    assert y.dtype == cdf.dtype == np.float32
    keep = phi > 1e-37                                    # where Phi is a normal float32
    assert _ulps(cdf[keep], phi[keep]).max() <= 1.0       # relative accuracy also where Phi is tiny (x << 0)
    assert _ulps(y[keep], (x.astype(np.float64) * phi)[keep]).max() <= 1.5
    # the reference computes 1 + erf, which cancels: Phi(-6) = 1e-9 there is 0 or off by far more
    ref_y, ref_cdf = A.gelu_forward_numpy(x)
    np.testing.assert_allclose(ref_cdf, cdf, rtol=0, atol=2e-7)
    gy = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    gx = A.gelu_backward_cpu(gy, x, cdf)
    x64 = x.astype(np.float64)
    want = gy * (cdf.astype(np.float64) + x64 * np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi))
    np.testing.assert_allclose(gx, want, rtol=3e-7, atol=1e-30)
    np.testing.assert_allclose(A.gelu_backward_numpy(gy, x, cdf), gx, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["sigmoid", "silu", "gelu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_their_references_on_special_values_and_layouts(name, dtype):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(300) * 4, SPECIAL]).astype(dtype)
    forward = {"sigmoid": (A.sigmoid_cpu, A.sigmoid_numpy), "silu": (A.silu_forward_cpu, A.silu_forward_numpy),
               "gelu": (A.gelu_forward_cpu, A.gelu_forward_numpy)}[name]
    with np.errstate(all="ignore"):
        got, ref = forward[0](x), forward[1](x)
    got, ref = (got, ref) if name != "gelu" else (got[0], ref[0])
    assert got.dtype == dtype and got.shape == x.shape
    finite = np.isfinite(x)
    tol = 2e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(got[finite], ref[finite], rtol=tol, atol=tol)
    nan, inf, minus_inf = got[300:303]                      # SPECIAL's first three
    assert np.isnan(nan)                                    # NaN in, NaN out
    if name == "sigmoid":
        assert inf == 1 and minus_inf == 0
    else:
        assert inf == np.inf                                # x * 1 (PyTorch's GELU gives NaN here)
    # a strided, multi-dimensional input gives what its contiguous copy gives, in its shape
    a = (rng.standard_normal((4, 6, 5)) * 3).astype(dtype)[:, ::2]
    out = forward[0](a)
    out, ref = (out, forward[0](np.ascontiguousarray(a))) if name != "gelu" else \
        (out[0], forward[0](np.ascontiguousarray(a))[0])
    assert out.shape == a.shape
    np.testing.assert_array_equal(out, ref)
    assert (forward[0](np.empty((0, 3), dtype)) if name != "gelu" else
            forward[0](np.empty((0, 3), dtype))[0]).shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_kernels_match_their_references(dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 5, 7)) * 4).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    s = A.sigmoid_cpu(x)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(A.sigmoid_backward_cpu(gy, s), A.sigmoid_backward_numpy(gy, s), rtol=tol, atol=tol)
    np.testing.assert_allclose(A.silu_backward_cpu(gy, x), A.silu_backward_numpy(gy, x), rtol=tol, atol=tol)
    x64 = x.astype(np.float64)
    s64 = _sigmoid_exact(x64.ravel()).reshape(x.shape)
    np.testing.assert_allclose(A.silu_backward_cpu(gy, x), gy * s64 * (1 + x64 * (1 - s64)), rtol=tol, atol=tol)
    cdf = A.gelu_forward_cpu(x)[1]
    np.testing.assert_allclose(A.gelu_backward_cpu(gy, x, cdf), A.gelu_backward_numpy(gy, x, cdf),
                               rtol=4 * tol, atol=4 * tol)
