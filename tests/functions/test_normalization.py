"""batch_norm, layer_norm, layer_norm2d: naive per-group loops, float64 gradcheck, PyTorch forward/backward."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import tinyconv as tc
import tinyconv.functional as F

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def _bn_naive(x, gamma, beta, eps):
    """Per channel: mean and biased variance over every other axis, by explicit loops over channels."""
    y = np.empty_like(x)
    means, variances = [], []
    for c in range(x.shape[1]):
        v = x[:, c].ravel()
        mu = sum(v) / len(v)
        var = sum((a - mu) ** 2 for a in v) / len(v)
        y[:, c] = (x[:, c] - mu) / np.sqrt(var + eps) * gamma[c] + beta[c]
        means.append(mu)
        variances.append(var)
    return y, np.array(means), np.array(variances)


shapes = st.sampled_from([(3, 2), (2, 3, 2), (2, 2, 2, 3), (1, 2, 3, 1)])


@fixture_ok
@given(shape=shapes, seed=st.integers(0, 2**16), affine=st.booleans())
def test_batch_norm_training_naive_and_gradcheck(kernels, shape, seed, affine):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2 + 1
    g, b = rng.uniform(0.5, 2, shape[1]), rng.standard_normal(shape[1])
    rm, rv = np.zeros(shape[1]), np.ones(shape[1])
    y = F.batch_norm(tc.tensor(x, dtype=np.float64), rm, rv, tc.tensor(g, dtype=np.float64),
                     tc.tensor(b, dtype=np.float64), training=True, momentum=0.3, eps=1e-5)
    expected, mu, var = _bn_naive(x, g, b, 1e-5)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)
    m = x.size // shape[1]  # running stats: momentum 0.3 towards the mean and the unbiased variance
    np.testing.assert_allclose(rm, 0.3 * mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rv, 0.7 + 0.3 * var * m / (m - 1), rtol=1e-10)
    ts = [tc.tensor(a, dtype=np.float64, requires_grad=True) for a in (x, g, b)]
    if affine:
        assert tc.gradcheck(lambda *a: F.batch_norm(a[0], None, None, a[1], a[2], training=True), ts)
    else:
        assert tc.gradcheck(lambda a: F.batch_norm(a, None, None, training=True), ts[:1])


@fixture_ok
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_batch_norm_eval_naive_and_gradcheck(kernels, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    rm, rv = rng.standard_normal(shape[1]), rng.uniform(0.5, 2, shape[1])
    g, b = rng.uniform(0.5, 2, shape[1]), rng.standard_normal(shape[1])
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    expected = (x - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-3) * g.reshape(bshape) + b.reshape(bshape)
    ts = [tc.tensor(a, dtype=np.float64, requires_grad=True) for a in (x, g, b)]
    fn = lambda *a: F.batch_norm(a[0], rm, rv, a[1], a[2], training=False, eps=1e-3)  # noqa: E731
    np.testing.assert_allclose(fn(*ts).numpy(), expected, rtol=1e-10, atol=1e-12)
    assert tc.gradcheck(fn, ts)


def _compare(torch, ours, theirs, arrays, n_grad, rtol=1e-4, atol=1e-5):
    a = [tc.tensor(v, requires_grad=i < n_grad) for i, v in enumerate(arrays)]
    b = [torch.tensor(v, requires_grad=i < n_grad) for i, v in enumerate(arrays)]
    ya, yb = ours(*a), theirs(*b)
    gy = np.random.default_rng(9).standard_normal(ya.shape).astype(np.float32)
    ya.backward(gy)
    yb.backward(torch.tensor(gy))
    np.testing.assert_allclose(ya.numpy(), yb.detach().numpy(), rtol=rtol, atol=atol)
    for i in range(n_grad):
        np.testing.assert_allclose(a[i].grad.numpy(), b[i].grad.numpy(), rtol=rtol, atol=atol)
    return a, b


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (4, 3, 6, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch(kernels, torch, shape, training):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    g, b = rng.uniform(0.5, 2, shape[1]).astype(np.float32), rng.standard_normal(shape[1]).astype(np.float32)
    rm, rv = rng.standard_normal(shape[1]).astype(np.float32), rng.uniform(0.5, 2, shape[1]).astype(np.float32)
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    _compare(torch, lambda a, c, d: F.batch_norm(a, rm, rv, c, d, training, 0.2, 1e-4),
             lambda a, c, d: torch.nn.functional.batch_norm(a, rm_t, rv_t, c, d, training, 0.2, 1e-4),
             [x, g, b], 3)
    np.testing.assert_allclose(rm, rm_t.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, rv_t.numpy(), rtol=1e-5, atol=1e-6)


@fixture_ok
@given(shape=shapes, seed=st.integers(0, 2**16), activation=st.sampled_from(["relu", "relu6"]))
def test_batch_norm_activation_naive_and_gradcheck(kernels, shape, seed, activation):
    """Batch norm in evaluation with its ReLU in the same pass: the two ops' values and gradients (the
    activation's mask applied before batch norm's backward), away from the kinks."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    rm, rv = rng.standard_normal(shape[1]), rng.uniform(0.5, 2, shape[1])
    g, b = rng.uniform(0.5, 2, shape[1]), rng.standard_normal(shape[1]) + 3
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    y = (x - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-3) * g.reshape(bshape) + b.reshape(bshape)
    assume(np.abs(y).min() > 1e-3 and np.abs(y - 6).min() > 1e-3)  # central differences across a kink fail
    expected = np.maximum(y, 0) if activation == "relu" else np.clip(y, 0, 6)
    ts = [tc.tensor(a, dtype=np.float64, requires_grad=True) for a in (x, g, b)]
    fn = lambda *a: F.batch_norm_activation(a[0], rm, rv, a[1], a[2], eps=1e-3, activation=activation)  # noqa: E731
    np.testing.assert_allclose(fn(*ts).numpy(), expected, rtol=1e-10, atol=1e-12)
    assert tc.gradcheck(fn, ts)


@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_batch_norm_activation_matches_torch(kernels, torch, activation):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 3, 6, 5)) * 3 + 2).astype(np.float32)
    g, b = rng.uniform(0.5, 2, 3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    rm, rv = rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    act = getattr(torch.nn.functional, activation)
    _compare(torch, lambda a, c, d: F.batch_norm_activation(a, rm, rv, c, d, 1e-4, activation),
             lambda a, c, d: act(torch.nn.functional.batch_norm(a, torch.tensor(rm), torch.tensor(rv), c, d, False,
                                                               0.1, 1e-4)), [x, g, b], 3)


def test_batch_norm_errors():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(tc.randn(1, 4), None, None, training=True)
    with pytest.raises(ValueError, match=r"weight should have shape \(4,\)"):
        F.batch_norm(tc.randn(2, 4), None, None, tc.ones(3), training=True)
    with pytest.raises(ValueError, match="required when not training"):
        F.batch_norm(tc.randn(2, 4), None, None)
    with pytest.raises(ValueError, match="'relu' or 'relu6', got 'tanh'"):
        F.batch_norm_activation(tc.randn(2, 4), tc.zeros(4), tc.ones(4), activation="tanh")
    with pytest.raises(ValueError, match=r"running_var should have shape \(4,\)"):
        F.batch_norm_activation(tc.randn(2, 4), tc.zeros(4), tc.ones(3))


def _ln_naive(x, k, gamma, beta, eps):
    lead = x.shape[:x.ndim - k]
    y = np.empty_like(x)
    for idx in np.ndindex(*lead):
        v = x[idx]
        mu = v.mean()
        var = ((v - mu) ** 2).mean()
        y[idx] = (v - mu) / np.sqrt(var + eps) * gamma + beta
    return y


@given(shape=st.sampled_from([(3, 4), (2, 3, 4), (2, 2, 3)]), k=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_layer_norm_naive_and_gradcheck(shape, k, seed):
    rng = np.random.default_rng(seed)
    ns = shape[len(shape) - k:]
    x, g, b = rng.standard_normal(shape), rng.uniform(0.5, 2, ns), rng.standard_normal(ns)
    ts = [tc.tensor(a, dtype=np.float64, requires_grad=True) for a in (x, g, b)]
    np.testing.assert_allclose(F.layer_norm(ts[0], ns, ts[1], ts[2]).numpy(), _ln_naive(x, k, g, b, 1e-5),
                               rtol=1e-10, atol=1e-12)
    assert tc.gradcheck(lambda *a: F.layer_norm(a[0], ns, a[1], a[2]), ts)
    assert tc.gradcheck(lambda a: F.layer_norm(a, ns), ts[:1])


@given(shape=st.sampled_from([(2, 3, 2, 2), (1, 4, 1, 3)]), seed=st.integers(0, 2**16))
def test_layer_norm2d_naive_and_gradcheck(shape, seed):
    rng = np.random.default_rng(seed)
    x, g, b = rng.standard_normal(shape), rng.uniform(0.5, 2, shape[1]), rng.standard_normal(shape[1])
    expected = np.moveaxis(_ln_naive(np.moveaxis(x, 1, -1), 1, g, b, 1e-6), -1, 1)
    ts = [tc.tensor(a, dtype=np.float64, requires_grad=True) for a in (x, g, b)]
    np.testing.assert_allclose(F.layer_norm2d(*ts, eps=1e-6).numpy(), expected, rtol=1e-10, atol=1e-12)
    assert tc.gradcheck(lambda *a: F.layer_norm2d(*a, eps=1e-6), ts)


def test_layer_norms_match_torch(torch):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 3, 4, 5)) * 2 + 1).astype(np.float32)
    g, b = rng.uniform(0.5, 2, (4, 5)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    _compare(torch, lambda *a: F.layer_norm(a[0], (4, 5), a[1], a[2]),
             lambda *a: torch.nn.functional.layer_norm(a[0], (4, 5), a[1], a[2]), [x, g, b], 3)
    g3, b3 = g[0, :3].copy(), b[0, :3].copy()
    _compare(torch, lambda *a: F.layer_norm2d(*a, eps=1e-6),
             lambda a, c, d: torch.nn.functional.layer_norm(a.permute(0, 2, 3, 1), (3,), c, d, 1e-6).permute(0, 3, 1, 2),
             [x, g3, b3], 3)
    with pytest.raises(ValueError, match=r"trailing dimensions \(4, 4\)"):
        F.layer_norm(tc.tensor(x), (4, 4))


def test_batch_norm_refuses_backward_after_its_input_was_written(kernels):
    # the CPU path keeps x (not xhat) for the backward pass, so a write into x must be caught, as in PyTorch
    x = tc.randn(4, 3, 2, requires_grad=True) * 1.0
    y = F.batch_norm(x, None, None, tc.ones(3, requires_grad=True), None, training=True)
    x[0] = 0.0
    with pytest.raises(RuntimeError, match="modified by an in-place operation: input 0 of BatchNorm"):
        y.sum().backward()
