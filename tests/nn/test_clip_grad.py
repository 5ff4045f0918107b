"""nn.utils: clip_grad_norm_ / clip_grad_value_ equal PyTorch's; parameter vectors round-trip."""
import math

import numpy as np
import pytest

import tinyconv as tc
from tinyconv.nn import Parameter, utils

SHAPES = [(3, 4), (7,), (2, 2, 2)]


def _params(rng, dtype, scale):
    params, grads = [], []
    for s in SHAPES:
        p = Parameter(rng.standard_normal(s).astype(dtype))
        g = (scale * rng.standard_normal(s)).astype(dtype)
        p.grad = tc.Tensor(g.copy())
        params.append(p)
        grads.append(g)
    params.append(Parameter(np.zeros(3, dtype)))  # no gradient: ignored
    return params, grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(torch, dtype, norm_type, max_norm):
    rng = np.random.default_rng(0)
    params, grads = _params(rng, dtype, scale=2.0)
    tparams = [torch.nn.Parameter(torch.tensor(p.numpy())) for p in params]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g)
    total = utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)
    tol = dict(rtol=1e-12) if dtype == np.float64 else dict(rtol=2e-6)
    assert isinstance(total, tc.Tensor) and total.dtype == dtype
    np.testing.assert_allclose(total.item(), ttotal.item(), **tol)
    for p, tp in zip(params, tparams):
        if tp.grad is None:
            assert p.grad is None
            continue
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), **tol)


def test_clip_grad_norm_naive_formula():
    rng = np.random.default_rng(1)
    params, grads = _params(rng, np.float64, scale=1.0)
    flat = np.concatenate([g.ravel() for g in grads])
    expected = np.sqrt(np.sum(flat ** 2))
    arrays = [p.grad.data for p in params[:-1]]
    total = utils.clip_grad_norm_(params, 1.0)
    assert total.item() == pytest.approx(expected, rel=1e-12)
    flat_after = np.concatenate([p.grad.numpy().ravel() for p in params[:-1]])
    assert np.sqrt(np.sum(flat_after ** 2)) == pytest.approx(1.0, rel=1e-5)
    assert all(p.grad.data is a for p, a in zip(params, arrays))  # in place


def test_clip_grad_norm_single_tensor_empty_and_nonfinite():
    p = Parameter(np.ones(4))
    assert utils.clip_grad_norm_([p], 1.0).item() == 0.0
    p.grad = tc.Tensor(np.array([3.0, 4.0, 0.0, 0.0]))
    assert utils.clip_grad_norm_(p, 10.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [3, 4, 0, 0], rtol=1e-6)
    p.grad = tc.Tensor(np.array([np.nan, 1.0, 0.0, 0.0]))
    with pytest.raises(RuntimeError, match="non-finite"):
        utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    assert math.isnan(utils.clip_grad_norm_(p, 1.0).item())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_grad_value_matches_torch(torch, dtype):
    rng = np.random.default_rng(2)
    params, grads = _params(rng, dtype, scale=2.0)
    tparams = [torch.nn.Parameter(torch.tensor(p.numpy())) for p in params]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g)
    assert utils.clip_grad_value_(params, 0.7) is None
    torch.nn.utils.clip_grad_value_(tparams, 0.7)
    for p, tp in zip(params[:-1], tparams):
        assert p.grad.dtype == dtype
        np.testing.assert_array_equal(p.grad.numpy(), tp.grad.numpy())
    assert params[-1].grad is None


def test_parameters_to_vector_and_back():
    rng = np.random.default_rng(3)
    params = [Parameter(rng.standard_normal(s)) for s in SHAPES]
    vec = utils.parameters_to_vector(params)
    np.testing.assert_array_equal(vec.numpy(), np.concatenate([p.numpy().ravel() for p in params]))
    targets = [Parameter(np.zeros(s)) for s in SHAPES]
    utils.vector_to_parameters(vec * 2, targets)
    for p, t in zip(params, targets):
        np.testing.assert_array_equal(t.numpy(), 2 * p.numpy())
    with pytest.raises(ValueError, match="entries"):
        utils.vector_to_parameters(vec, targets[:2])
    # differentiable: d(sum(vec * c))/dp = c reshaped
    c = rng.standard_normal(vec.shape[0])
    (utils.parameters_to_vector(params) * tc.Tensor(c)).sum().backward()
    np.testing.assert_array_equal(np.concatenate([p.grad.numpy().ravel() for p in params]), c)
