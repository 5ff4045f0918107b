"""Direct convolution kernels (kernels/direct.py): the reference against a naive loop and im2col + GEMM, the
Numba twin against the reference, non-finite inputs, thread independence, and the rule that picks them."""
import numpy as np
import pytest

from tinyconv_kernels import conv2d as CK
from tinyconv_kernels import direct as D
from tinyconv_kernels import threads

# (N, C, K, H, W, KH, KW, PH, PW, extra_OH, extra_OW)
GEOMETRIES = [
    (3, 1, 6, 12, 12, 5, 5, 0, 0, 0, 0),     # LeNet's C1, small (N not a multiple of IMAGES_PER_JOB)
    (2, 6, 16, 9, 9, 5, 5, 0, 0, 0, 0),      # LeNet's C3, small
    (2, 2, 3, 7, 5, 3, 3, 1, 1, 0, 0),       # odd K: one map left over; W < H
    (1, 3, 4, 6, 9, 2, 4, 1, 2, 1, 1),       # even kernel, non-square, 'same'-like bottom/right padding
    (2, 1, 5, 5, 8, 3, 7, 3, 0, 0, 0),       # padding past the kernel (negative padding in the gradient)
    (5, 2, 2, 4, 4, 1, 1, 0, 0, 0, 0),       # 1x1
    (1, 1, 1, 6, 6, 6, 6, 0, 0, 0, 0),       # one output pixel
]


def _setup(g, dtype, rng):
    N, C, K, H, W, KH, KW, PH, PW, eh, ew = g
    OH, OW = H + 2 * PH - KH + 1 + eh, W + 2 * PW - KW + 1 + ew
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    gy = rng.standard_normal((N, K, OH, OW)).astype(dtype)
    return x, w, b, gy, (PH, PW)


def _all(impl, x, w, b, gy, PH, PW):
    OH, OW = gy.shape[2:]
    H, W = x.shape[2:]
    KH, KW = w.shape[2:]
    mod = vars(D)
    return (mod[f"direct_conv2d_{impl}"](x, w, b, PH, PW, OH, OW),
            mod[f"direct_conv2d_grad_input_{impl}"](gy, w, H, W, PH, PW),
            mod[f"direct_conv2d_grad_weight_{impl}"](x, gy, KH, KW, PH, PW))


def _im2col(x, w, b, gy, PH, PW):
    """The same three results by the im2col + GEMM reference of conv2d."""
    OH, OW = gy.shape[2:]
    y, _ = CK.conv2d_forward_numpy(x, w, b, 1, 1, PH, PW, 1, 1, OH, OW, 1)
    gx, gw = CK.conv2d_backward_numpy(gy, x, w, None, 1, 1, PH, PW, 1, 1, 1, True, True)
    return y, gx, gw


def naive(x, w, b, PH, PW, OH, OW):
    N, C, H, W = x.shape
    K, _, KH, KW = w.shape
    y = np.zeros((N, K, OH, OW)) + b.reshape(K, 1, 1)
    for n, k, oh, ow, c, kh, kw in np.ndindex(N, K, OH, OW, C, KH, KW):
        h, v = oh - PH + kh, ow - PW + kw
        if 0 <= h < H and 0 <= v < W:
            y[n, k, oh, ow] += w[k, c, kh, kw] * x[n, c, h, v]
    return y


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_reference_matches_naive_loop_im2col_and_gradients_are_adjoints(geometry):
    x, w, b, gy, (PH, PW) = _setup(geometry, np.float64, np.random.default_rng(0))
    y, gx, gw = _all("numpy", x, w, b, gy, PH, PW)
    np.testing.assert_allclose(y, naive(x, w, b, PH, PW, *gy.shape[2:]), rtol=1e-12, atol=1e-12)
    for got, want in zip((y, gx, gw), _im2col(x, w, b, gy, PH, PW)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # y - b is linear in x and in w: <y - b, gy> = <x, gx> = <w, gw>
    lin = ((y - b.reshape(-1, 1, 1)) * gy).sum()
    np.testing.assert_allclose(lin, (x * gx).sum(), rtol=1e-10)
    np.testing.assert_allclose(lin, (w * gw).sum(), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_numba_matches_reference_and_im2col(geometry, dtype):
    x, w, b, gy, (PH, PW) = _setup(geometry, dtype, np.random.default_rng(1))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    want = _all("numpy", x, w, b, gy, PH, PW)
    for got, ref, gemm in zip(_all("cpu", x, w, b, gy, PH, PW), want, _im2col(x, w, b, gy, PH, PW)):
        assert got.dtype == dtype and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(got, gemm, rtol=tol, atol=tol)


def test_forward_without_bias():
    x, w, _, gy, (PH, PW) = _setup(GEOMETRIES[3], np.float32, np.random.default_rng(2))
    np.testing.assert_allclose(D.direct_conv2d_cpu(x, w, None, PH, PW, *gy.shape[2:]),
                               D.direct_conv2d_numpy(x, w, None, PH, PW, *gy.shape[2:]), rtol=1e-5, atol=1e-5)


def _nonfinite_pattern(a):
    return np.isnan(a), np.isposinf(a), np.isneginf(a)


@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[1], GEOMETRIES[3]])
@pytest.mark.parametrize("where", ["x", "gy"])
def test_inf_and_nan_in_x_or_gy_propagate_as_im2col(geometry, where):
    """inf/NaN in the input or the output gradient land where im2col + GEMM puts them, in every result
    (the weight gradient's junk columns never turn a finite entry into NaN: ``_exact_grad_weight``)."""
    x, w, b, gy, (PH, PW) = _setup(geometry, np.float32, np.random.default_rng(3))
    a = x if where == "x" else gy
    flat = a.reshape(-1)
    flat[1], flat[-1], flat[a.size // 2] = np.inf, -np.inf, np.nan
    if where == "x":  # also a pixel only the junk columns of the weight gradient read: the last column
        x[0, 0, 0, -1] = np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        gemm = _im2col(x, w, b, gy, PH, PW)
        for impl in ("numpy", "cpu"):
            for got, want in zip(_all(impl, x, w, b, gy, PH, PW), gemm):
                for g, h in zip(_nonfinite_pattern(got), _nonfinite_pattern(want)):
                    np.testing.assert_array_equal(g, h)
                finite = np.isfinite(want)
                np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)


def test_nonfinite_weight_the_documented_difference():
    """With an inf weight, the forward matches im2col; the input gradient is NaN wherever im2col's is not
    finite, and maybe more (the padding's zeros times the weight: the module's note)."""
    x, w, b, gy, (PH, PW) = _setup(GEOMETRIES[3], np.float32, np.random.default_rng(4))
    w[1, 0, 0, 0] = np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        (y, gx, _), (y0, gx0, _) = _all("cpu", x, w, b, gy, PH, PW), _im2col(x, w, b, gy, PH, PW)
    for g, h in zip(_nonfinite_pattern(y), _nonfinite_pattern(y0)):
        np.testing.assert_array_equal(g, h)
    assert not np.isfinite(gx[~np.isfinite(gx0)]).any()


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    """Jobs of IMAGES_PER_JOB images, summed in job order: 1 thread and every thread give the same bits."""
    x, w, b, gy, (PH, PW) = _setup((13, 2, 6, 16, 16, 5, 5, 2, 2, 0, 0), np.float32, np.random.default_rng(5))
    kernels = (D.direct_conv2d_cpu, D.direct_conv2d_grad_input_cpu, D.direct_conv2d_grad_weight_cpu)
    for fn in kernels:  # parallel from the first element, so that these small arrays use every thread
        monkeypatch.setattr(fn, "parallel_min_size", 1, raising=False)
    forward, grad_input, grad_weight = (threads.sized(fn) for fn in kernels)
    results = []
    for n in (1, threads.max_threads()):
        with threads.num_threads(n):
            results.append([forward(x, w, b, PH, PW, 16, 16), grad_input(gy, w, 16, 16, PH, PW),
                            grad_weight(x, gy, 5, 5, PH, PW)])
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)


def test_the_rule_picks_lenets_c1_and_not_c3():
    assert D.direct_suits((64, 1, 32, 32), (6, 1, 5, 5), 1, (1, 1), (1, 1))           # C1
    assert not D.direct_suits((64, 6, 14, 14), (16, 6, 5, 5), 1, (1, 1), (1, 1))     # C3: the GEMM wins
    assert not D.direct_suits((64, 1, 32, 32), (6, 1, 5, 5), 1, (2, 2), (1, 1))      # strided
    assert not D.direct_suits((64, 1, 32, 32), (6, 1, 5, 5), 1, (1, 1), (2, 2))      # dilated
    assert not D.direct_suits((64, 2, 32, 32), (6, 1, 5, 5), 2, (1, 1), (1, 1))      # grouped
    assert CK.strategy((64, 1, 32, 32), (6, 1, 5, 5), 1, (0, 0), (28, 28), "cpu") == "direct"
    assert CK.strategy((64, 1, 32, 32), (6, 1, 5, 5), 1, (0, 0), (28, 28), "cuda") == "gemm"
