"""The engine: Tensor facts, graph recording, the iterative backward, accumulation, freeing, no_grad."""
import gc
import sys
import threading

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import backend
from tinyconv.core import Function, _check_same_device


# -- Tensor facts ---------------------------------------------------------------------------------------
def test_tensor_wraps_array_and_reports_facts():
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = tc.Tensor(arr, requires_grad=True)
    assert t.data is arr
    assert t.grad is None and t.requires_grad and t.is_leaf
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6 and t.dtype == np.float32
    assert t.size() == (2, 3) and t.size(1) == 3 and t.numel() == 6 and len(t) == 2
    assert t.device == "cpu"
    np.testing.assert_array_equal(t.numpy(), arr)
    assert tc.tensor([[2.5]]).item() == 2.5
    assert float(tc.tensor(1.5)) == 1.5 and int(tc.tensor(3)) == 3
    with pytest.raises(ValueError, match=r"only one-element tensors.*\(2, 3\)"):
        t.item()


def test_numpy_conversion_and_ndarray_on_the_left():
    t = tc.tensor([1.0, 2.0], requires_grad=True)
    np.testing.assert_array_equal(np.asarray(t), [1.0, 2.0])
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    y = np.array([3.0, 4.0], np.float32) * t  # the ndarray defers to Tensor.__rmul__: still in the graph
    assert isinstance(y, tc.Tensor) and y.requires_grad


def test_truth_value_follows_numpy():
    assert bool(tc.tensor(1.0)) and not bool(tc.tensor([0.0]))
    with pytest.raises(ValueError):
        bool(tc.tensor([1.0, 2.0]))


def test_detach_shares_data_and_leaves_the_graph():
    x = tc.randn(3, requires_grad=True)
    y = x * 2
    d = y.detach()
    assert d.data is y.data and not d.requires_grad and d.is_leaf
    (d * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), d.numpy())  # no path through d


def test_to_cpu_is_identity_and_to_dtype_is_differentiable():
    x = tc.randn(2, 3, requires_grad=True)
    assert x.to("cpu") is x and x.cpu() is x
    y = x.to(tc.float64)
    z = x.to(dtype=np.float64)
    assert y.dtype == np.float64 and z.dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy(), rtol=1e-6)


def test_to_unknown_or_unavailable_device_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tc.zeros(2).to("tpu")
    monkeypatch.setattr(tc.backend, "_cuda_available", False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        tc.zeros(2).to("cuda")


# -- graph recording ------------------------------------------------------------------------------------
def test_requires_grad_propagates_only_from_inputs_that_need_it():
    a, b = tc.randn(2), tc.randn(2, requires_grad=True)
    assert not (a * a).requires_grad and (a * a).is_leaf
    assert (a * b).requires_grad and not (a * b).is_leaf


def test_comparisons_return_boolean_tensors_without_gradient():
    x = tc.randn(3, requires_grad=True)
    for c in (x > 0, x >= 0, x < 0, x <= 0, x == x, x != 0):
        assert c.dtype == np.bool_ and not c.requires_grad and c.is_leaf
    np.testing.assert_array_equal((x > 0).numpy(), x.numpy() > 0)


def test_diamond_graph_backward_waits_for_every_consumer():
    # y feeds both a and r: y's backward must run only after a's has added its share
    x = tc.tensor([1.5], dtype=tc.float64, requires_grad=True)
    y = x * 2
    a = y * 3
    r = y + a * y
    r.backward(np.ones(1))
    # r = 2x + 12x^2  ->  dr/dx = 2 + 24x
    np.testing.assert_allclose(x.grad.numpy(), 2 + 24 * x.numpy())


def test_same_tensor_used_twice_gets_both_gradients():
    x = tc.tensor([3.0], requires_grad=True)
    (x * x).backward(np.ones(1, np.float32))
    np.testing.assert_allclose(x.grad.numpy(), [6.0])


def test_gradients_accumulate_across_backward_calls_until_zeroed():
    x = tc.randn(4, dtype=tc.float64, requires_grad=True)
    (x * x).sum().backward()
    g1 = x.grad.numpy().copy()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * g1)
    x.grad = None
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), g1)


def test_leaf_gradient_is_a_fresh_array():
    # Add passes the incoming gradient straight through: the leaf must still get its own copy
    x = tc.randn(3, requires_grad=True)
    g = np.ones(3, np.float32)
    (x + 1).backward(g)
    x.grad.data[...] = 7
    np.testing.assert_array_equal(g, np.ones(3))


def test_backward_from_a_leaf_and_with_explicit_grad():
    x = tc.randn(3, requires_grad=True)
    x.backward(tc.ones(3))
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3))
    y = x * 3
    y.backward(tc.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(x.grad.numpy(), 1 + 3 * np.array([1.0, 2.0, 3.0]))


def test_retain_grad_keeps_the_gradient_of_an_intermediate():
    x = tc.randn(3, requires_grad=True)
    y = (x * 2).retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * y.numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), 2 * y.grad.numpy(), rtol=1e-6)


def test_mixed_precision_gradients_come_back_in_each_inputs_dtype():
    a = tc.randn(3, requires_grad=True)
    b = tc.randn(3, dtype=tc.float64, requires_grad=True)
    y = a * b
    assert y.dtype == np.float64
    (y * 2).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad.numpy(), 2 * b.numpy(), rtol=1e-6)


# -- errors -----------------------------------------------------------------------------------------------
def test_backward_on_a_non_scalar_without_grad_says_so():
    y = tc.randn(2, 3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"only for scalar outputs.*\(2, 3\)"):
        y.backward()


def test_backward_with_a_grad_of_the_wrong_shape():
    y = tc.randn(2, 3, requires_grad=True) * 2
    with pytest.raises(ValueError, match=r"grad has shape \(3,\), expected \(2, 3\)"):
        y.backward(np.ones(3))


def test_backward_on_a_tensor_without_graph():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tc.randn(2).sum().backward()


def test_second_backward_through_a_freed_graph_raises_before_touching_any_gradient():
    x = tc.randn(3, requires_grad=True)
    y = x.exp()
    y.sum().backward()
    g = x.grad.numpy().copy()
    with pytest.raises(RuntimeError, match=r"Exp a second time.*retain_graph=True"):
        (y * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), g)


def test_retain_graph_allows_a_second_backward():
    x = tc.randn(3, dtype=tc.float64, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    g = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * g)


def test_saved_buffers_are_released_after_backward():
    x = tc.randn(3, requires_grad=True)
    y = x.exp()
    fn = y._ctx
    assert fn.y is not None and fn.inputs
    y.sum().backward()
    assert not hasattr(fn, "y") and fn.inputs == ()


class _FakeGpuArray(np.ndarray):
    """A NumPy array that the backend takes for a CuPy one (its type lives in a 'cupy' module)."""


_FakeGpuArray.__module__ = "cupy._fake"


def test_mixing_devices_names_each_tensor_and_its_device(monkeypatch):
    a, b = tc.randn(2, 3), tc.Tensor(np.ones(3, np.float32).view(_FakeGpuArray))
    assert b.device == "cuda"
    with pytest.raises(RuntimeError, match=r"Mul: expected all tensors on the same device.*"
                                            r"input 0 \(2, 3\) on 'cpu', input 1 \(3,\) on 'cuda'"):
        a * b
    c = tc.randn(3)
    monkeypatch.setattr(backend, "device_of", lambda x: "cuda" if x is c.data else "cpu")
    with pytest.raises(RuntimeError, match=r"Add: .*input 0 \(3,\) on 'cuda', input 2 \(2, 3\) on 'cpu'"):
        _check_same_device("Add", [c, None, a])


# -- depth: no recursion anywhere -------------------------------------------------------------------------
def test_backward_through_ten_thousand_operations():
    x = tc.tensor([1.0], dtype=tc.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward(np.ones(1))
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10_000], rtol=1e-9)


class _Identity(Function):
    def forward(self, x):
        return x

    def backward(self, gy):
        return gy


def test_freeing_a_hundred_thousand_operation_graph_does_not_recurse():
    limit = sys.getrecursionlimit()
    x = tc.tensor([1.0], requires_grad=True)
    y = x
    gc.disable()  # building is quicker without collections along the way
    try:
        for _ in range(100_000):  # each node holds the previous one: a 100,000-deep chain of references
            y = _Identity.apply(y)
    finally:
        gc.enable()
    try:
        sys.setrecursionlimit(1000)  # deallocation must not lean on deep recursion either
        del y
        gc.collect()
    finally:
        sys.setrecursionlimit(limit)
    assert x.grad is None


# -- no_grad ---------------------------------------------------------------------------------------------------
def test_no_grad_as_context_manager_restores_the_mode():
    x = tc.randn(2, requires_grad=True)
    with tc.no_grad():
        assert not tc.is_grad_enabled()
        y = x * 2
        with tc.enable_grad():
            z = x * 2
        assert not tc.is_grad_enabled()
    assert tc.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf and z.requires_grad


def test_no_grad_as_decorator_with_and_without_parentheses_and_in_recursion():
    @tc.no_grad()
    def f(x, depth):
        inner = f(x, depth - 1) if depth else None
        return x * 2, tc.is_grad_enabled(), inner

    @tc.no_grad
    def g(x):
        return x * 2

    x = tc.randn(2, requires_grad=True)
    y, enabled, _ = f(x, 3)
    assert not y.requires_grad and not enabled
    assert tc.is_grad_enabled()  # the outermost exit restores the mode, whatever the nesting
    assert not g(x).requires_grad and tc.is_grad_enabled()


def test_no_grad_is_per_thread():
    seen = []
    with tc.no_grad():
        t = threading.Thread(target=lambda: seen.append(tc.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


# -- Function --------------------------------------------------------------------------------------------------
class _ScaledSquare(Function):
    """y = scale * x^2, written in the documented style: forward saves named state, backward uses it."""

    def forward(self, x):
        self.x = x
        return self.scale * x * x

    def backward(self, gy):
        return gy * 2 * self.scale * self.x


class _SplitSign(Function):
    """Two outputs: the positive and the negative part of x."""

    def forward(self, x):
        self.pos = x > 0
        return np.where(self.pos, x, 0), np.where(self.pos, 0, x)

    def backward(self, gpos, gneg):
        return np.where(self.pos, gpos, gneg)


def test_a_user_function_records_hyper_parameters_and_saved_state():
    x = tc.randn(4, dtype=tc.float64, requires_grad=True)
    y = _ScaledSquare.apply(x, scale=3.0)
    fn = y._ctx
    assert fn.scale == 3.0 and fn._saved == ["x"]
    assert tc.gradcheck(lambda x: _ScaledSquare.apply(x, scale=3.0), [x])
    y.sum().backward()
    assert fn.scale == 3.0 and not hasattr(fn, "x")  # hyper-parameters survive, saved arrays do not


def test_multi_output_function_gets_zeros_for_unused_outputs():
    x = tc.tensor([-1.0, 2.0, -3.0], requires_grad=True)
    pos, neg = _SplitSign.apply(x)
    (pos * 5).sum().backward()  # neg is unused: its gradient arrives as zeros
    np.testing.assert_array_equal(x.grad.numpy(), [0, 5, 0])


def test_function_apply_turns_constants_into_tensors_of_the_inputs_dtype():
    class Mul2(Function):
        def forward(self, a, b):
            self.a, self.b = a, b
            return a * b

        def backward(self, gy):
            return gy * self.b, gy * self.a

    x = tc.randn(3, requires_grad=True)
    y = Mul2.apply(x, 2.5)
    assert y.dtype == np.float32
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2.5)


def test_function_under_no_grad_keeps_no_state():
    x = tc.randn(3, requires_grad=True)
    with tc.no_grad():
        y = _ScaledSquare.apply(x, scale=2.0)
    assert y._ctx is None


def test_backward_returning_too_few_gradients_is_reported():
    class Forgetful(Function):
        def forward(self, a, b):
            return a + b

        def backward(self, gy):
            return gy

    a, b = tc.randn(2, requires_grad=True), tc.randn(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Forgetful.backward returned 1 gradients for 2 inputs"):
        Forgetful.apply(a, b).sum().backward()


def test_backward_returning_a_wrong_shape_is_reported():
    class Bad(Function):
        def forward(self, x):
            return x.sum(axis=0)

        def backward(self, gy):
            return gy  # forgot to broadcast back

    x = tc.randn(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Bad.backward returned a gradient of shape \(3,\) for an input "
                                            r"of shape \(2, 3\)"):
        Bad.apply(x).sum().backward()


def test_repr_shows_values_dtype_and_grad():
    assert repr(tc.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(tc.tensor([1.0], dtype=tc.float64, requires_grad=True)) == \
        "tensor([1.], dtype=float64, requires_grad=True)"
