"""``tinyconv.gradcheck``: passes correct backwards, catches wrong ones and says where."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import array_shapes

import tinyconv as tc
from tinyconv import Function, GradcheckError


class _Cube(Function):
    """y = x^3 with a correct backward."""

    def forward(self, x):
        self.x = x
        return x ** 3

    def backward(self, gy):
        return gy * 3 * self.x ** 2


class _CubeWrongAtOneElement(_Cube):
    """The same, except that the gradient of element ``bad`` is off by 10%."""

    def backward(self, gy):
        g = gy * 3 * self.x ** 2
        g.reshape(-1)[self.bad] *= 1.1
        return g


class _MulForgetsB(Function):
    """a * b whose backward returns the right gradient for ``a`` and zero for ``b``."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        return gy * self.b, np.zeros_like(self.b)


def leaf(rng, shape, lo=0.5, hi=2.0):
    return tc.Tensor(rng.uniform(lo, hi, shape), requires_grad=True)


@given(shape=array_shapes(min_dims=0, max_dims=3, max_side=3), seed=st.integers(0, 2**32 - 1))
def test_passes_a_correct_backward(shape, seed):
    x = leaf(np.random.default_rng(seed), shape)
    assert tc.gradcheck(_Cube.apply, [x])
    assert tc.gradcheck(_Cube.apply, [x], directions=3)


@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=3), data=st.data())
def test_catches_a_wrong_element_and_names_it(shape, data):
    x = leaf(np.random.default_rng(0), shape)
    bad = data.draw(st.integers(0, x.size - 1))
    where = tuple(int(i) for i in np.unravel_index(bad, shape))
    with pytest.raises(GradcheckError) as info:
        tc.gradcheck(lambda x: _CubeWrongAtOneElement.apply(x, bad=bad), [x])
    msg = str(info.value)
    assert f"input 0 (shape {tuple(shape)})" in msg and f"element {where}" in msg
    assert "analytic" in msg and "numeric" in msg and "max abs error" in msg and "max rel error" in msg
    assert not tc.gradcheck(lambda x: _CubeWrongAtOneElement.apply(x, bad=bad), [x], raise_exception=False)


def test_reports_the_values_and_errors():
    x = tc.Tensor(np.array([2.0]), requires_grad=True)
    with pytest.raises(GradcheckError) as info:
        tc.gradcheck(lambda x: _CubeWrongAtOneElement.apply(x, bad=0), [x], seed=0)
    v = np.random.default_rng(0).standard_normal((1,))[0]  # gradcheck's weighting of the output
    numeric, analytic = 12 * v, 12 * v * 1.1
    msg = str(info.value)
    assert f"analytic {analytic:.8g} vs numeric" in msg
    assert f"max abs error {abs(analytic - numeric):.3g}" in msg and "max rel error 0.1" in msg


def test_names_the_input_whose_gradient_is_wrong():
    rng = np.random.default_rng(1)
    a, b = leaf(rng, (2, 3)), leaf(rng, (2, 3))
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(2, 3\)\)"):
        tc.gradcheck(_MulForgetsB.apply, [a, b])
    # with b held constant the same function passes
    assert tc.gradcheck(_MulForgetsB.apply, [a, b.detach()])


def test_directional_mode_catches_a_wrong_backward_on_a_large_input():
    x = leaf(np.random.default_rng(2), (40, 50))
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(40, 50\)\) disagrees at random direction"):
        tc.gradcheck(lambda x: _CubeWrongAtOneElement.apply(x, bad=7), [x], directions=4, rtol=1e-6)
    assert tc.gradcheck(_Cube.apply, [x], directions=4)


def test_float32_inputs_are_checked_in_float64_and_left_untouched():
    x = tc.rand(3, 2, requires_grad=True)
    before = x.numpy().copy()
    assert tc.gradcheck(lambda x: tc.exp(x) * x, [x])
    assert x.dtype == np.float32 and x.grad is None
    np.testing.assert_array_equal(x.numpy(), before)


def test_non_contiguous_inputs_and_non_tensor_arguments():
    x = tc.Tensor(np.random.default_rng(3).uniform(-1, 1, (3, 4)).T, requires_grad=True)
    assert not x.data.flags.c_contiguous
    assert tc.gradcheck(lambda x, k: (x * k).exp(), [x, 3.0])
    with pytest.raises(GradcheckError):  # the perturbation must reach the function for this to fail
        tc.gradcheck(lambda x, k: _CubeWrongAtOneElement.apply(x * k, bad=5), [x, 1.0])


def test_tuple_outputs_and_inputs_without_gradient():
    x = tc.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert tc.gradcheck(lambda x: tc.split(x * x, [1, 2], dim=1), [x])
    with pytest.raises(ValueError, match="no input requires grad"):
        tc.gradcheck(tc.exp, [x.detach()])


def test_gradcheck_takes_a_float32_module_and_checks_a_float64_copy():
    from tinyconv import nn
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 2))
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    x = tc.randn(2, 2, 4, 4, requires_grad=True)
    assert tc.gradcheck(model, [x], check_params=True)
    for k, v in model.state_dict().items():  # the model itself is untouched: float32, same values
        assert v.dtype == before[k].dtype and np.array_equal(v.numpy(), before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_gradcheck_on_a_module_names_the_wrong_parameter():
    from tinyconv import nn

    class Wrong(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(tc.ones(3))

        def forward(self, x):
            return _MulForgetsB.apply(x, self.scale)  # the parameter's gradient is lost

    assert tc.gradcheck(Wrong(), [tc.randn(3, requires_grad=True)])  # the input's gradient is right
    with pytest.raises(GradcheckError, match="parameter 'scale'"):
        tc.gradcheck(Wrong(), [tc.randn(3, requires_grad=True)], check_params=True)
