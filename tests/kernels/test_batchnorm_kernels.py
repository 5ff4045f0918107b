"""Batch-norm kernels: NumPy reference and Numba CPU against float64 per-channel loops (forward) and the
long-form chain rule through mean and variance (backward)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinyconv_kernels as K

TARGETS = ["numpy", "cpu"]


def naive_forward(x, gamma, beta, eps):
    """Per channel, in float64: mean, biased variance (two passes), y = gamma (x - mu)/sqrt(var + eps) + beta."""
    x = x.astype(np.float64)
    N, C, L = x.shape
    y, mean, var = np.empty_like(x), np.empty(C), np.empty(C)
    for c in range(C):
        v = x[:, c, :]
        mean[c] = v.sum() / v.size
        var[c] = ((v - mean[c]) ** 2).sum() / v.size
        g = 1.0 if gamma is None else float(gamma[c])
        b = 0.0 if beta is None else float(beta[c])
        y[:, c, :] = g * (v - mean[c]) / np.sqrt(var[c] + eps) + b
    return y, mean, var


def naive_backward(gy, x, gamma, eps):
    """dL/dx = g invstd + dL/dvar 2 (x - mu)/m + dL/dmu / m with g = dy gamma, dL/dvar = -1/2 invstd^3
    sum g (x - mu), dL/dmu = -invstd sum g: the long form, before it is collected into the kernels' one."""
    x, gy = x.astype(np.float64), gy.astype(np.float64)
    gx, sum_gy, sum_gy_xhat = np.empty_like(x), np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        v, dy = x[:, c, :], gy[:, c, :]
        m, mu = v.size, v.mean()
        invstd = 1 / np.sqrt(((v - mu) ** 2).mean() + eps)
        g = dy * (1.0 if gamma is None else float(gamma[c]))
        dvar = -0.5 * invstd ** 3 * (g * (v - mu)).sum()
        dmu = -invstd * g.sum()
        gx[:, c, :] = g * invstd + dvar * 2 * (v - mu) / m + dmu / m
        sum_gy[c], sum_gy_xhat[c] = dy.sum(), (dy * (v - mu) * invstd).sum()
    return gx, sum_gy, sum_gy_xhat


def run(target, dtype, shape, affine, loc=0.0, scale=1.0, seed=0, eps=1e-5):
    """Forward and training backward of one target on ``shape`` viewed as (N, C, L); the arrays used."""
    rng = np.random.default_rng(seed)
    x = (loc + scale * rng.standard_normal(shape)).astype(dtype).reshape(shape[0], shape[1], -1)
    gy = rng.standard_normal(x.shape).astype(dtype)
    gamma = rng.uniform(0.5, 2, shape[1]).astype(dtype) if affine else None
    beta = rng.standard_normal(shape[1]).astype(dtype) if affine else None
    y, mean, var, invstd = K.get("batch_norm_forward", target)(x, gamma, beta, eps)
    k = invstd if gamma is None else gamma * invstd
    grads = K.get("batch_norm_backward", target)(gy, x, mean, invstd, k, True)
    return (x, gy, gamma, beta), (y, mean, var, invstd), grads


def tolerance(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# planes below 32 values take the Numba kernels' blocked loops (blocks of 3 and 2 channels for (3, 20) and
# (2, 17, 3)), larger ones the per-channel loops
@pytest.mark.parametrize("shape", [(5, 3), (3, 20), (4, 3, 7), (2, 17, 3), (2, 3, 4, 5), (1, 2, 3, 3), (3, 1, 1, 2),
                                   (2, 3, 6, 6), (1, 2, 40)])
def test_forward_and_backward_match_the_naive_loops(target, dtype, shape):
    for affine in (True, False):
        (x, gy, gamma, beta), (y, mean, var, invstd), (gx, sgy, sgyx) = run(target, dtype, shape, affine, 1.5, 2.0)
        y_ref, mean_ref, var_ref = naive_forward(x, gamma, beta, 1e-5)
        tol = tolerance(dtype)
        for got, want in ((y, y_ref), (mean, mean_ref), (var, var_ref), (invstd, 1 / np.sqrt(var_ref + 1e-5))):
            assert got.dtype == dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, **tol)
        for got, want in zip((gx, sgy, sgyx), naive_backward(gy, x, gamma, 1e-5)):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(16, 2, 50, 50), (20_000, 3)])
def test_statistics_stay_exact_when_the_mean_dwarfs_the_deviation(dtype, shape):
    # |mean| / std = 1e4 over 40,000 (20,000) values per channel: a one-pass E[x^2] - E[x]^2 would lose every
    # digit in float32, a float32 running sum a few; the Numba kernel sums in float64 and subtracts the mean first
    (x, _, _, _), (y, mean, var, invstd), _ = run("cpu", dtype, shape, False, loc=1e4, scale=1.0)
    y_ref, mean_ref, var_ref = naive_forward(x, None, None, 1e-5)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-7)
    np.testing.assert_allclose(var, var_ref, rtol=3e-7 if dtype == np.float32 else 1e-12)
    # y to a few float32 roundings of O(1) values, although x (and the mean) are only known to ulp(1e4) ~ 1e-3
    np.testing.assert_allclose(y, y_ref, atol=1e-5 if dtype == np.float32 else 1e-9)


@given(n=st.integers(1, 4), c=st.integers(1, 19), spatial=st.sampled_from([(), (1,), (6,), (2, 3), (1, 5), (33,), (4, 9)]),
       dtype=st.sampled_from([np.float32, np.float64]), affine=st.booleans(), seed=st.integers(0, 2**16))
def test_numba_matches_the_reference_on_drawn_shapes(n, c, spatial, dtype, affine, seed):
    shape = (n, c) + spatial
    if n * int(np.prod(spatial)) < 2:
        shape = (2,) + shape[1:]  # training needs two values per channel
    expected = run("numpy", dtype, shape, affine, seed=seed)
    got = run("cpu", dtype, shape, affine, seed=seed)
    for a, b in zip(got[1] + got[2], expected[1] + expected[2]):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, **tolerance(dtype))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("L", [5, 40])
def test_eval_map_and_its_backward(target, dtype, L):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, L)).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    mean, invstd = rng.standard_normal(4).astype(dtype), rng.uniform(0.5, 2, 4).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, 4).astype(dtype), rng.standard_normal(4).astype(dtype)
    k = gamma * invstd
    y = K.get("batch_norm_eval", target)(x, mean, k, beta)
    xhat = (x - mean[:, None]) * invstd[:, None]
    tol = tolerance(dtype)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, gamma[:, None] * xhat + beta[:, None], **tol)
    np.testing.assert_allclose(K.get("batch_norm_eval", target)(x, mean, k, None), gamma[:, None] * xhat, **tol)
    gx, sum_gy, sum_gy_xhat = K.get("batch_norm_backward", target)(gy, x, mean, invstd, k, False)
    np.testing.assert_allclose(gx, gy * k[:, None], **tol)  # running statistics: dx = dy gamma invstd
    np.testing.assert_allclose(sum_gy, gy.sum(axis=(0, 2)), **tol)
    np.testing.assert_allclose(sum_gy_xhat, (gy * xhat).sum(axis=(0, 2)), **tol)


def test_kernels_set_their_parallel_threshold():
    for name in ("batch_norm_forward", "batch_norm_eval", "batch_norm_backward"):
        assert 0 < K.get(name, "cpu").parallel_min_size < 1 << 24


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@given(dtype=st.sampled_from([np.float32, np.float64]), L=st.sampled_from([1, 5, 40]), C=st.integers(1, 9),
       N=st.integers(1, 3), activation=st.sampled_from(["relu", "relu6"]), seed=st.integers(0, 2**16))
def test_eval_with_its_activation_is_the_two_kernels_in_turn(dtype, L, C, N, activation, seed):
    """``batch_norm_eval(..., activation)`` gives the bits of batch_norm_eval, then the relu kernel, on both loop
    orders (planes under and over ``_BLOCKS_BELOW_L``), NaN, infinities and both zeros included; the reference
    gives those of its own two steps."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N, C, L)) * 4).astype(dtype)
    x.flat[rng.integers(0, x.size, 3)] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0], 3)
    mean, k = rng.standard_normal(C).astype(dtype), rng.uniform(-2, 2, C).astype(dtype)
    beta = None if seed % 3 == 0 else rng.standard_normal(C).astype(dtype)
    for target in TARGETS:
        with np.errstate(invalid="ignore"):
            fused = K.get("batch_norm_eval", target)(x, mean, k, beta, activation)
            apart = K.get(activation, target)(K.get("batch_norm_eval", target)(x, mean, k, beta))
        assert fused.dtype == dtype and fused.shape == x.shape
        np.testing.assert_array_equal(_bits(fused), _bits(apart), err_msg=target)


@pytest.mark.parametrize("target", TARGETS)
def test_eval_refuses_an_unknown_activation(target):
    x, c = np.ones((1, 2, 3), np.float32), np.ones(2, np.float32)
    with pytest.raises(ValueError, match="activation should be one of"):
        K.get("batch_norm_eval", target)(x, c, c, c, "gelu")


@given(dtype=st.sampled_from([np.float32, np.float64]), L=st.sampled_from([1, 5, 40]), C=st.integers(1, 9),
       N=st.integers(1, 3), activation=st.sampled_from([None, "relu", "relu6"]), seed=st.integers(0, 2**16))
def test_eval_into_out_and_in_place(dtype, L, C, N, activation, seed):
    """``out=`` (a convolution's output chunk, normalised where it lies: conv2d_forward's ``norm``) gives the
    bits of the result without it, into another array or into x itself."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N, C, L)) * 4).astype(dtype)
    mean, k, beta = (rng.standard_normal(C).astype(dtype) for _ in range(3))
    for target in TARGETS:
        f = K.get("batch_norm_eval", target)
        want = f(x, mean, k, beta, activation)
        out = np.full_like(x, np.nan)
        assert f(x, mean, k, beta, activation, out=out) is out
        same = x.copy()
        assert f(same, mean, k, beta, activation, out=same) is same
        for got in (out, same):
            np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=target)


@pytest.mark.parametrize("target", TARGETS)
def test_eval_refuses_an_out_it_cannot_fill(target):
    x, c = np.ones((2, 2, 3), np.float32), np.ones(2, np.float32)
    for out in (np.empty((2, 2, 4), np.float32), np.empty((2, 2, 3), np.float64),
                np.empty((2, 2, 6), np.float32)[:, :, ::2]):
        with pytest.raises(ValueError, match="out should be a C-contiguous float32 array of shape"):
            K.get("batch_norm_eval", target)(x, c, c, c, out=out)
