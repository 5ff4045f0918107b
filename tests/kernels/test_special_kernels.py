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
