"""Activations and softmax: naive NumPy forward, float64 gradcheck, PyTorch forward/backward, kinks, stability."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import array_shapes

import tinyconv as tc
import tinyconv.functional as F


def _phi(v):
    return 0.5 * (1 + math.erf(v / math.sqrt(2)))


def _softplus(v, beta=1.0, threshold=20.0):
    return v if beta * v > threshold else math.log(1 + math.exp(beta * v)) / beta


# name -> (tinyconv function, element-by-element reference, torch function name and kwargs)
ELEMENTWISE = {
    "relu": (F.relu, lambda v: max(v, 0.0), ("relu", {})),
    "relu6": (F.relu6, lambda v: min(max(v, 0.0), 6.0), ("relu6", {})),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda v: v if v > 0 else 0.2 * v,
                   ("leaky_relu", {"negative_slope": 0.2})),
    "sigmoid": (F.sigmoid, lambda v: 1 / (1 + math.exp(-v)), ("sigmoid", {})),
    "tanh": (F.tanh, math.tanh, ("tanh", {})),
    "silu": (F.silu, lambda v: v / (1 + math.exp(-v)), ("silu", {})),
    "hardswish": (F.hardswish, lambda v: v * min(max(v + 3, 0.0), 6.0) / 6, ("hardswish", {})),
    "hardsigmoid": (F.hardsigmoid, lambda v: min(max(v + 3, 0.0), 6.0) / 6, ("hardsigmoid", {})),
    "gelu": (F.gelu, lambda v: v * _phi(v), ("gelu", {})),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"),
                  lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))),
                  ("gelu", {"approximate": "tanh"})),
    "softplus": (F.softplus, _softplus, ("softplus", {})),
    "softplus_beta": (lambda x: F.softplus(x, beta=2.0, threshold=3.0), lambda v: _softplus(v, 2.0, 3.0),
                      ("softplus", {"beta": 2.0, "threshold": 3.0})),
}
KINKS = np.array([-3.0, 0.0, 1.5, 3.0, 6.0])


def _away_from_kinks(x):
    """Values at least 0.05 from every kink, so central differences do not straddle one."""
    near = np.abs(x[..., None] - KINKS).min(-1) < 0.05
    return np.where(near, x + 0.1, x)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_forward_matches_naive(name):
    fn, ref, _ = ELEMENTWISE[name]
    x = np.random.default_rng(1).uniform(-8, 8, size=(3, 17))
    expected = np.vectorize(ref)(x)
    np.testing.assert_allclose(fn(tc.tensor(x, dtype=np.float64)).numpy(), expected, rtol=1e-12, atol=1e-12)
    out32 = fn(tc.tensor(x.astype(np.float32)))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ELEMENTWISE)
@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=4), seed=st.integers(0, 2**16))
def test_gradcheck(name, shape, seed):
    x = _away_from_kinks(np.random.default_rng(seed).uniform(-5, 7, size=shape))
    assert tc.gradcheck(ELEMENTWISE[name][0], [tc.tensor(x, dtype=np.float64, requires_grad=True)])


def _torch_compare(torch, fn, torch_fn, x, rtol=1e-4, atol=1e-6):
    """Forward and backward (with a random upstream gradient) agree with PyTorch in float32."""
    gy = np.random.default_rng(7).standard_normal(np.shape(fn(tc.tensor(x)).data)).astype(np.float32)
    a = tc.tensor(x, requires_grad=True)
    y = fn(a)
    y.backward(gy)
    b = torch.tensor(x, requires_grad=True)
    yt = torch_fn(b)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_matches_torch_including_kinks(torch, name):
    fn, _, (tname, kw) = ELEMENTWISE[name]
    tfn = getattr(torch.nn.functional, tname)
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(-10, 10, 64), KINKS, -KINKS, [-30.0, 25.0, 80.0]]).astype(np.float32)
    _torch_compare(torch, fn, lambda t: tfn(t, **kw), x)


def test_kink_conventions():
    x = tc.tensor([0.0, 6.0, -3.0, 3.0], requires_grad=True)
    F.relu(x).sum().backward()
    assert x.grad.numpy()[0] == 0.0
    x.grad = None
    F.relu6(x).sum().backward()
    assert x.grad.numpy()[:2].tolist() == [0.0, 0.0]
    x.grad = None
    F.leaky_relu(x, 0.1).sum().backward()
    assert x.grad.numpy()[0] == pytest.approx(0.1)


def test_large_inputs_are_finite_and_exact():
    x = tc.tensor([-1e4, -100.0, 100.0, 1e4], requires_grad=True)
    s = F.sigmoid(x)
    assert s.numpy()[[0, 2, 3]].tolist() == [0.0, 1.0, 1.0] and 0 < s.numpy()[1] < 1e-40  # e^-100, no NaN
    np.testing.assert_array_equal(F.softplus(x).numpy()[2:], [100.0, 1e4])
    assert np.isfinite(F.silu(x).numpy()).all()
    (s.sum() + F.softplus(x).sum() + F.log_softmax(x, 0).sum()).backward()
    assert np.isfinite(x.grad.numpy()).all()
    ls = F.log_softmax(tc.tensor([[1e4, -1e4, 0.0]]), dim=1).numpy()
    np.testing.assert_allclose(ls, [[0.0, -2e4, -1e4]])


def _softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=4), seed=st.integers(0, 2**16), data=st.data())
def test_softmax_family(shape, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    np.testing.assert_allclose(F.softmax(tc.tensor(x, dtype=np.float64), dim).numpy(), _softmax_ref(x, dim),
                               rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(tc.tensor(x, dtype=np.float64), dim).numpy(),
                               np.log(_softmax_ref(x, dim)), rtol=1e-10, atol=1e-12)
    t = tc.tensor(x, dtype=np.float64, requires_grad=True)
    assert tc.gradcheck(lambda a: F.softmax(a, dim), [t])
    assert tc.gradcheck(lambda a: F.log_softmax(a, dim), [t])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_family_matches_torch(torch, dim):
    x = np.random.default_rng(3).standard_normal((4, 5, 3)).astype(np.float32) * 4
    _torch_compare(torch, lambda a: F.softmax(a, dim), lambda t: torch.softmax(t, dim), x)
    _torch_compare(torch, lambda a: F.log_softmax(a, dim), lambda t: torch.log_softmax(t, dim), x)


def test_softmax_implicit_dim_and_errors():
    x = tc.randn(2, 3)
    np.testing.assert_allclose(F.softmax(x).numpy().sum(axis=1), [1, 1], rtol=1e-6)  # 2-D: dim 1 as PyTorch
    with pytest.raises(ValueError, match="dim 2 is out of range"):
        F.softmax(x, 2)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="erf")
