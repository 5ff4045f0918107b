"""local_response_norm: a naive loop, float64 gradcheck over drawn configurations, both kernel paths, PyTorch."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyconv as tc
import tinyconv.functional as F

# `kernels` and `torch` are function-scoped fixtures, but hold no per-example state: reuse across examples is fine
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def naive_lrn(x, size, alpha, beta, k):
    """b_c = a_c / (k + alpha/size * sum_{c'=c-size//2}^{c+(size-1)//2} a_{c'}^2)^beta at every (n, spatial)."""
    y = np.zeros_like(x)
    C = x.shape[1]
    for c in range(C):
        window = range(max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1))
        y[:, c] = x[:, c] / (k + alpha / size * sum(x[:, j] ** 2 for j in window)) ** beta
    return y


shapes = st.sampled_from([(2, 5, 3), (1, 6, 2, 3), (2, 4, 3, 2), (1, 3, 2, 2, 2), (1, 1, 4)])


@fixture_ok
@given(shape=shapes, size=st.integers(1, 6), alpha=st.floats(1e-4, 2.0), beta=st.floats(0.1, 1.5),
       k=st.floats(0.5, 3.0), seed=st.integers(0, 2**16))
def test_lrn_matches_naive_loop_and_gradcheck(kernels, shape, size, alpha, beta, k, seed):
    x = tc.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)
    y = F.local_response_norm(x, size, alpha, beta, k)
    np.testing.assert_allclose(y.numpy(), naive_lrn(x.numpy(), size, alpha, beta, k), rtol=1e-12, atol=1e-14)
    assert tc.gradcheck(lambda x: F.local_response_norm(x, size, alpha, beta, k), [x])


def test_lrn_float32_and_alexnet_convention(kernels):
    x = tc.randn(2, 8, 3, 3)
    y = F.local_response_norm(x, 5, alpha=5e-4, beta=0.75, k=2.0)     # the paper's alpha=1e-4, times n=5
    assert y.dtype == np.float32
    a = x.numpy().astype(np.float64)
    paper = np.zeros_like(a)
    for c in range(8):   # Krizhevsky et al. 2012, eq. in section 3.3: alpha not divided by n
        s = sum(a[:, j] ** 2 for j in range(max(0, c - 2), min(8, c + 3)))
        paper[:, c] = a[:, c] / (2.0 + 1e-4 * s) ** 0.75
    np.testing.assert_allclose(y.numpy(), paper, rtol=1e-6)


@pytest.mark.parametrize("call,error,message", [
    (lambda: F.local_response_norm(tc.randn(3, 4), 2), ValueError, r"3 or more dimensions .*got shape \(3, 4\)"),
    (lambda: F.local_response_norm(tc.randn(1, 3, 4), 0), ValueError, r"size must be a positive int"),
    (lambda: F.local_response_norm(tc.tensor(np.ones((1, 2, 2), np.int64)), 2), TypeError, r"floating-point"),
])
def test_lrn_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


@fixture_ok
@given(shape=shapes, size=st.integers(1, 6), alpha=st.floats(1e-4, 1.0), beta=st.floats(0.5, 1.0),
       k=st.floats(1.0, 2.0), seed=st.integers(0, 2**16))
def test_lrn_matches_torch(torch, shape, size, alpha, beta, k, seed):
    x_np = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x, xt = tc.tensor(x_np, requires_grad=True), torch.tensor(x_np, requires_grad=True)
    y = F.local_response_norm(x, size, alpha, beta, k)
    yt = torch.nn.functional.local_response_norm(xt, size, alpha, beta, k)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-6)
    gy = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)
    y.backward(gy)
    yt.backward(torch.tensor(gy))
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-5)
