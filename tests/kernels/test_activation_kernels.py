"""The rectifiers and their derivatives from the saved output: Numba loops and ufuncs against the NumPy
references, bit for bit."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

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


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_rectifiers_match_the_reference_bit_for_bit(dtype, data):
    """Every float, NaN, infinities and both zeros included: the loops give NumPy's bits (maximum turns -0.0
    into +0.0, clip keeps it), on contiguous and strided arrays."""
    x = data.draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=4, max_side=7),
                             elements=st.floats(width=32 if dtype == np.float32 else 64)))
    if data.draw(st.booleans()) and x.ndim >= 1 and x.shape[-1] > 1:
        x = x[..., ::2]  # a strided view
    x = np.concatenate([x.reshape(-1), KINKS.astype(dtype)]).reshape(-1) if data.draw(st.booleans()) else x
    for name in ("relu", "relu6"):
        with np.errstate(invalid="ignore"):
            got, want = getattr(A, f"{name}_cpu")(x), getattr(A, f"{name}_numpy")(x)
        assert got.dtype == dtype and got.shape == x.shape, name
        np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=name)


def test_rectifiers_on_the_kinks_and_other_dtypes():
    x = KINKS.astype(np.float32)
    y = A.relu_cpu(x)
    np.testing.assert_array_equal(y, np.float32([0, 0, 0, 1e-30, 3, 6 - 1e-6, 6, 7, np.nan, np.inf, 0]))
    assert not np.signbit(y[1])  # max(-0.0, 0) is +0.0, as np.maximum
    y6 = A.relu6_cpu(x)
    np.testing.assert_array_equal(y6, np.float32([0, 0, 0, 1e-30, 3, 6 - 1e-6, 6, 6, np.nan, 6, 0]))
    assert np.signbit(y6[1])  # clip keeps -0.0
    i = np.arange(-3, 9).reshape(3, 4)  # integers and float16: the reference serves them
    np.testing.assert_array_equal(A.relu_cpu(i), np.maximum(i, 0))
    assert A.relu6_cpu(i).dtype == i.dtype and A.relu6_cpu(i.astype(np.float16)).dtype == np.float16
