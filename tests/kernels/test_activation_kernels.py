"""The rectifiers' derivatives from the saved output: Numba ufuncs against the NumPy masks, bit for bit."""
import numpy as np
import pytest

from tinyconv_kernels import activation as A

KINKS = np.array([-1.0, -0.0, 0.0, 1e-30, 3.0, 6.0 - 1e-6, 6.0, 7.0, np.nan, np.inf, -np.inf])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, forward", [("relu", lambda x: np.maximum(x, 0)),
                                           ("relu6", lambda x: np.clip(x, 0, 6))])
def test_backward_from_the_output_matches_the_mask_of_the_input(name, forward, dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(200) * 5, KINKS]).astype(dtype)
    with np.errstate(invalid="ignore"):
        y = forward(x)
    gy = rng.standard_normal(x.shape).astype(dtype)
    gy[:3] = [np.nan, np.inf, -np.inf]  # outside or inside the mask, gy * 0 as in the reference
    mask = (x > 0) if name == "relu" else (x > 0) & (x < 6)
    with np.errstate(invalid="ignore"):
        want = gy * mask
        got = getattr(A, f"{name}_backward_cpu")(gy, y)
        ref = getattr(A, f"{name}_backward_numpy")(gy, y)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, want)


def test_strided_and_other_dtypes():
    y = np.linspace(-3, 9, 48, dtype=np.float32).reshape(6, 8)[:, ::3]
    gy = np.ones_like(y)
    np.testing.assert_array_equal(A.relu6_backward_cpu(gy, y), A.relu6_backward_numpy(gy, y))
    h = y.astype(np.float16)  # no ufunc loop for float16: the reference serves it
    assert A.relu_backward_cpu(h, h).dtype == np.float16
