"""LRN kernels: every implementation against a naive loop (forward) and central differences (backward)."""
import numpy as np
import pytest

import tinyconv_kernels as K


def call(name, target, *args):
    out = K.get(name, target)(*args)
    host = lambda a: a if isinstance(a, np.ndarray) else a.copy_to_host()  # noqa: E731
    return tuple(host(a) for a in out) if isinstance(out, tuple) else host(out)


def naive_lrn(x, size, alpha, beta, k):
    """y_c = x_c / (k + alpha/size * sum_{c' = c - size//2}^{c + (size-1)//2} x_{c'}^2)^beta, per (n, m)."""
    N, C, M = x.shape
    y = np.zeros_like(x)
    for n, c, m in np.ndindex(N, C, M):
        window = [j for j in range(c - size // 2, c + (size - 1) // 2 + 1) if 0 <= j < C]
        y[n, c, m] = x[n, c, m] / (k + alpha / size * sum(x[n, j, m] ** 2 for j in window)) ** beta
    return y


@pytest.mark.parametrize("target", ["numpy", "cpu", "cuda"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 2, 5])
def test_lrn_kernels(target, dtype, size):
    rng = np.random.default_rng(size)
    shape, alpha, beta, k = (2, 6, 3), 0.7, 0.75, 1.5
    x = rng.standard_normal(shape).astype(dtype)
    y, scale = call("lrn_forward", target, x, size, alpha, beta, k)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype and scale.dtype == dtype
    np.testing.assert_allclose(y, naive_lrn(x.astype(np.float64), size, alpha, beta, k), rtol=tol, atol=tol)

    # backward: the gradient of L = sum(gy * y) against central differences of the naive loop, in float64
    gy = rng.standard_normal(shape).astype(dtype)
    gx = call("lrn_backward", target, x, scale, gy, size, alpha, beta)
    x64, eps = x.astype(np.float64), 1e-6
    numeric = np.zeros(shape)
    for i in np.ndindex(*shape):
        d = np.zeros(shape)
        d[i] = eps
        numeric[i] = ((naive_lrn(x64 + d, size, alpha, beta, k) - naive_lrn(x64 - d, size, alpha, beta, k))
                      * gy).sum() / (2 * eps)
    assert gx.dtype == dtype
    np.testing.assert_allclose(gx, numeric, rtol=1e-4 if dtype == np.float32 else 1e-6, atol=1e-5)
