"""Pooling kernels: the NumPy reference against naive loops, the Numba and numba.cuda versions against it.

The CUDA kernels run on Numba's CUDA simulator when there is no GPU (tests/conftest.py): shapes stay tiny.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tinyconv_kernels as K
from tinyconv_kernels import pooling_cpu as P

# (N, C, H, W), (KH, KW), (SH, SW), (PH, PW), (DH, DW), ceil_mode
CONFIGS = [
    ((2, 3, 7, 7), (3, 3), (2, 2), (0, 0), (1, 1), False),    # AlexNet's overlapping pooling
    ((1, 2, 6, 5), (2, 2), (2, 2), (0, 0), (1, 1), True),     # odd width, ceil_mode keeps a clipped window
    ((1, 2, 7, 6), (3, 2), (2, 1), (1, 1), (1, 2), True),     # rectangular, padded, dilated
    ((1, 1, 5, 5), (4, 4), (3, 3), (2, 2), (1, 1), True),     # last window starts in the padding
    ((2, 3, 8, 9), (2, 2), (2, 2), (0, 0), (1, 1), False),    # LeNet's 2x2/2: windows tile x, a column left over
    ((1, 2, 9, 7), (3, 2), (3, 2), (0, 0), (1, 1), False),    # rectangular tiles, the last row and column left
]
# (target, config): the CUDA simulator is slow, it skips the largest config and the tiled ones (the CUDA
# kernels have no tiled path)
CASES = [(t, cfg) for t in ("numpy", "cpu", "cuda") for cfg in CONFIGS if t != "cuda" or cfg in CONFIGS[1:4]]


def out_size(n, k, s, p, d, ceil_mode):
    o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    return o - 1 if ceil_mode and (o - 1) * s >= n + p else o


def call(name, target, *args):
    """Run a kernel; CUDA results come back to the host."""
    out = K.get(name, target)(*args)
    host = lambda a: a if isinstance(a, np.ndarray) else a.copy_to_host()  # noqa: E731
    return tuple(host(a) for a in out) if isinstance(out, tuple) else host(out)


def naive_max_pool(x, k, s, p, d, out):
    N, C, H, W = x.shape
    y = np.zeros((N, C) + out, x.dtype)
    idx = np.zeros((N, C) + out, np.int64)
    for n, c, oh, ow in np.ndindex(*y.shape):
        best, arg = -np.inf, None
        for kh in range(k[0]):
            for kw in range(k[1]):
                h, w = oh * s[0] - p[0] + kh * d[0], ow * s[1] - p[1] + kw * d[1]
                if 0 <= h < H and 0 <= w < W and (arg is None or x[n, c, h, w] > best):
                    best, arg = x[n, c, h, w], h * W + w
        y[n, c, oh, ow], idx[n, c, oh, ow] = best, arg
    return y, idx


def avg_windows(H, W, k, s, p, out, count_include_pad, divisor_override):
    """For each output cell: (oh, ow), its real input positions, its divisor (PyTorch's rules, by counting)."""
    for oh, ow in np.ndindex(*out):
        h0, w0 = oh * s[0] - p[0], ow * s[1] - p[1]
        rows = [h for h in range(h0, h0 + k[0]) if -p[0] <= h < H + p[0]]   # the window inside the padded input
        cols = [w for w in range(w0, w0 + k[1]) if -p[1] <= w < W + p[1]]
        real = [(h, w) for h in rows for w in cols if 0 <= h < H and 0 <= w < W]
        yield (oh, ow), real, divisor_override or (len(rows) * len(cols) if count_include_pad else len(real))


def naive_avg_pool(x, *geometry):
    N, C, H, W = x.shape
    y = np.zeros((N, C) + geometry[3], x.dtype)
    for (oh, ow), real, divisor in avg_windows(H, W, *geometry):
        y[:, :, oh, ow] = sum(x[:, :, h, w] for h, w in real) / divisor
    return y


def naive_avg_pool_backward(gy, H, W, *geometry):
    gx = np.zeros(gy.shape[:2] + (H, W), gy.dtype)
    for (oh, ow), real, divisor in avg_windows(H, W, *geometry):
        for h, w in real:
            gx[:, :, h, w] += gy[:, :, oh, ow] / divisor
    return gx


def distinct(shape, dtype, rng):
    return (rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 - 3).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target,config", CASES)
def test_max_pool2d_kernels(target, config, dtype):
    shape, k, s, p, d, ceil = config
    rng = np.random.default_rng(1)
    x = distinct(shape, dtype, rng)
    out = tuple(out_size(n, *a, ceil) for n, *a in zip(shape[2:], k, s, p, d))
    y, idx = call("max_pool2d_forward", target, x, *k, *s, *p, *d, *out)
    y_ref, idx_ref = naive_max_pool(x, k, s, p, d, out)
    assert y.dtype == dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)

    np.testing.assert_array_equal(call("max_pool2d_values", target, x, *k, *s, *p, *d, *out), y_ref)

    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = call("max_pool2d_backward", target, gy, idx, *shape[2:])
    gx_ref = np.zeros(shape, dtype)
    for n, c, oh, ow in np.ndindex(*gy.shape):
        gx_ref[n, c].flat[idx_ref[n, c, oh, ow]] += gy[n, c, oh, ow]
    assert gx.dtype == dtype
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_max_pool2d_ties_and_nan_follow_pytorch(target):
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 3, 2] = np.nan
    y, idx = call("max_pool2d_forward", target, x, 2, 2, 2, 2, 0, 0, 1, 1, 2, 2)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 14]])      # the first of tied maxima; NaN wins
    assert np.isnan(y[0, 0, 1, 1]) and np.isfinite(y[0, 0, :, 0]).all()


# The windows compiled with their geometry (kernels/pooling_cpu.py, ``COMPILED_WINDOWS``) against the reference:
# windows inside the input and windows in the padding, ceil_mode's clipped ones, ties (ReLU's zeros: the first
# wins) and NaNs (the last wins).
@settings(max_examples=40, deadline=None)
@given(window=st.sampled_from(sorted(P.COMPILED_WINDOWS)), N=st.integers(1, 3), C=st.integers(1, 3),
       H=st.integers(1, 12), W=st.integers(1, 12), pad=st.booleans(), ceil=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_compiled_max_pool_windows_match_the_reference(window, N, C, H, W, pad, ceil, dtype, seed):
    KH, KW, SH, SW = window
    PH, PW = (KH // 2, KW // 2) if pad else (0, 0)
    assume(H + 2 * PH >= KH and W + 2 * PW >= KW)
    out = (out_size(H, KH, SH, PH, 1, ceil), out_size(W, KW, SW, PW, 1, ceil))
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (N, C, H, W)).astype(dtype)   # few values: many ties
    x[rng.random(x.shape) < 0.05] = np.nan
    args = (x, KH, KW, SH, SW, PH, PW, 1, 1, *out)
    y_ref, idx_ref = K.get("max_pool2d_forward", "numpy")(*args)
    y, idx = K.get("max_pool2d_forward", "cpu")(*args)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(K.get("max_pool2d_values", "cpu")(*args), y_ref)


# Tiled average pooling (window = stride, no padding) over short rows takes kernels with the window and the
# row length compiled in (``COMPILED_AVG_MAX_OW``): the general tiled loops' bits, rows and columns past the
# last window included (they get no gradient), and the reference's values.
@settings(max_examples=30, deadline=None)
@given(S=st.sampled_from([(2, 2), (3, 2)]), N=st.integers(1, 3), C=st.integers(1, 3),
       OH=st.integers(1, 6), OW=st.sampled_from([5, P.COMPILED_AVG_MAX_OW, P.COMPILED_AVG_MAX_OW + 1]),
       extra=st.sampled_from([(0, 0), (1, 0), (0, 1)]), divisor=st.sampled_from([0, 3]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_compiled_tiled_avg_pool_matches_the_general_loops(S, N, C, OH, OW, extra, divisor, dtype, seed):
    SH, SW = S
    H, W = OH * SH + extra[0], OW * SW + extra[1]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    y = K.get("avg_pool2d_forward", "cpu")(x, SH, SW, SH, SW, 0, 0, OH, OW, True, divisor)
    scale = dtype(1 / (divisor or SH * SW))
    y_loops = np.empty_like(y)
    P._avg_pool2d_tiled_forward_jit(x, y_loops, SH, SW, scale)
    np.testing.assert_array_equal(y, y_loops)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, K.get("avg_pool2d_forward", "numpy")(x, SH, SW, SH, SW, 0, 0, OH, OW, True,
                                                                        divisor), rtol=tol, atol=tol)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = K.get("avg_pool2d_backward", "cpu")(gy, H, W, SH, SW, SH, SW, 0, 0, True, divisor)
    gx_loops = np.zeros_like(x)
    P._avg_pool2d_tiled_backward_jit(gy, gx_loops, SH, SW, scale)
    np.testing.assert_array_equal(gx, gx_loops)
    assert ((SH, SW, OW) in P._compiled_avg) == (OW <= P.COMPILED_AVG_MAX_OW)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count_include_pad,divisor_override", [(True, 0), (False, 0), (False, 5)])
@pytest.mark.parametrize("target,config", CASES)
def test_avg_pool2d_kernels(target, config, count_include_pad, divisor_override, dtype):
    shape, k, s, p, _, ceil = config
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    out = tuple(out_size(n, kk, ss, pp, 1, ceil) for n, kk, ss, pp in zip(shape[2:], k, s, p))
    y = call("avg_pool2d_forward", target, x, *k, *s, *p, *out, count_include_pad, divisor_override)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype
    np.testing.assert_allclose(y, naive_avg_pool(x, k, s, p, out, count_include_pad, divisor_override),
                               rtol=tol, atol=tol)

    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = call("avg_pool2d_backward", target, gy, *shape[2:], *k, *s, *p, count_include_pad, divisor_override)
    assert gx.shape == shape and gx.dtype == dtype
    np.testing.assert_allclose(gx, naive_avg_pool_backward(gy, *shape[2:], k, s, p, out, count_include_pad,
                                                           divisor_override), rtol=tol, atol=tol)
