"""The erf kernel (exact GELU): NumPy reference, Numba and numba.cuda (simulator) against math.erf."""
import math

import numpy as np
import pytest

from tinyconv_kernels import special


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", ["numpy", "cpu", "cuda"])
def test_erf_matches_math_erf(impl, dtype):
    x = np.concatenate([np.linspace(-6, 6, 37), [0.0, -0.0, 1e-8, 30.0, -30.0]]).astype(dtype).reshape(6, 7)
    y = getattr(special, f"erf_{impl}")(x)
    if impl == "cuda":
        y = y.copy_to_host()
    expected = np.array([math.erf(v) for v in x.ravel().tolist()]).reshape(x.shape)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, expected, rtol=1e-6 if dtype == np.float32 else 1e-15, atol=1e-7)


def test_erf_of_an_empty_or_strided_array():
    assert special.erf_cpu(np.empty((0, 3), np.float32)).shape == (0, 3)
    x = np.linspace(-2, 2, 24).reshape(4, 6)[:, ::2]
    np.testing.assert_array_equal(special.erf_cpu(x), special.erf_numpy(x))


def _ulps_from_exact(y32, x32):
    """Distance of float32 results from float64 tanh, in float32 ulps of the exact value."""
    exact = np.tanh(x32.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(y32.astype(np.float64) - exact) / ulp


def test_float32_tanh_is_correctly_rounded():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-10, 10, 400_001, dtype=np.float32),
                        rng.standard_normal(200_000).astype(np.float32) * 4,
                        np.geomspace(1e-38, 1.0, 50_000).astype(np.float32),
                        # around the switch to +-1 and the clamp at 9.5
                        np.linspace(8.5, 10.0, 10_001, dtype=np.float32)])
    x = np.concatenate([x, -x])
    y = special.tanh_cpu(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert _ulps_from_exact(y, x).max() <= 0.5 + 1e-6
    # the reference (NumPy's float32 tanh) is within 1.4 ulp of exact, so the two differ by at most 2 ulp
    assert _ulps_from_exact(special.tanh_numpy(x), x).max() < 1.5


def test_tanh_special_values_and_layouts():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 3e38, -3e38, 9.0, 20.0], np.float32)
    y = special.tanh_cpu(x)
    np.testing.assert_array_equal(y, np.tanh(x))  # NaN equals NaN here
    assert np.signbit(y[4]) and not np.signbit(y[3])  # tanh(-0.0) = -0.0
    strided = np.linspace(-3, 3, 60, dtype=np.float32).reshape(6, 10)[:, ::3]
    np.testing.assert_array_equal(special.tanh_cpu(strided), special.tanh_cpu(np.ascontiguousarray(strided)))
    assert special.tanh_cpu(np.empty((0, 4), np.float32)).shape == (0, 4)
    x64 = np.linspace(-5, 5, 101)
    np.testing.assert_array_equal(special.tanh_cpu(x64), np.tanh(x64))  # float64 keeps NumPy's tanh


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_backward_is_gy_times_one_minus_y_squared(dtype):
    rng = np.random.default_rng(1)
    y = np.tanh(rng.standard_normal((5, 7, 3))).astype(dtype)
    gy = rng.standard_normal((5, 7, 3)).astype(dtype)
    gx = special.tanh_backward_cpu(gy, y)
    assert gx.dtype == dtype and gx.shape == y.shape
    expected = gy.astype(np.float64) * (1 - y.astype(np.float64) ** 2)
    # 1 - y*y cancels where |y| is near 1: both the kernel and the reference are off by a few eps of |gy|
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(gx - expected) <= 3 * eps * np.abs(gy))
    assert np.all(np.abs(gx - special.tanh_backward_numpy(gy, y)) <= 4 * eps * np.abs(gy))
