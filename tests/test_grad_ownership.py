"""Who owns a leaf's gradient: the engine hands a fresh array to ``.grad`` without copying it, and copies what
the caller, another input or the function itself may still hold."""
import numpy as np
import pytest

import tinyconv as tc


class _Handout(tc.Function):
    """Identity whose backward returns ``self.make(gy)``: lets a test see which array a leaf receives."""

    def forward(self, x):
        self.kept = np.full_like(x, 3.0)
        return x.copy()

    def backward(self, gy):
        out = self.make(self, gy)
        _Handout.last = out
        return out


def _handout(x, make):
    return _Handout.apply(x, make=make)


def test_a_leaf_takes_a_fresh_gradient_array_without_a_copy():
    a = tc.tensor(np.ones(3), requires_grad=True)
    _handout(a, lambda f, gy: gy * 2.0).sum().backward()
    assert a.grad.data is _Handout.last and a.grad.numpy().tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("case", ["incoming gradient", "view", "saved buffer", "caller's grad"])
def test_a_leaf_copies_a_gradient_that_something_else_may_hold(case):
    a = tc.tensor(np.ones(4), requires_grad=True)
    make = {"incoming gradient": lambda f, gy: gy,
            "view": lambda f, gy: (gy * 1.0).reshape(2, 2).reshape(4),
            "saved buffer": lambda f, gy: f.kept,
            "caller's grad": lambda f, gy: gy}[case]
    y = _handout(a, make)
    g = np.arange(4.0)
    y.backward(g, retain_graph=True)
    assert a.grad.data is not _Handout.last
    a.grad.data[...] = -1.0   # changing .grad in place (clip_grad_norm_ does) touches nothing else
    a.grad = None
    y.backward(g)
    expected = [3.0] * 4 if case == "saved buffer" else g.tolist()
    assert a.grad.numpy().tolist() == expected and g.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_one_gradient_array_reaching_two_leaves_is_not_shared_between_them():
    a, b = tc.tensor(np.ones(3), requires_grad=True), tc.tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()          # Add hands the same array to both inputs
    assert a.grad.data is not b.grad.data
    a.grad.data *= 10
    assert b.grad.numpy().tolist() == [1.0, 1.0, 1.0]
    c = tc.tensor(np.ones(2), requires_grad=True)
    (c + c).sum().backward()          # and to the same leaf twice
    assert c.grad.numpy().tolist() == [2.0, 2.0]


class _Twice(tc.Function):
    def forward(self, x, y):
        return x + y

    def backward(self, gy):
        fresh = gy * 1.0
        return fresh, fresh   # one new array for both inputs


def test_a_fresh_array_returned_for_two_leaves_is_copied_for_them():
    a, b = tc.tensor(np.ones(2), requires_grad=True), tc.tensor(np.ones(2), requires_grad=True)
    _Twice.apply(a, b).sum().backward()
    assert a.grad.data is not b.grad.data
    a.grad.data[...] = 5.0
    assert b.grad.numpy().tolist() == [1.0, 1.0]


def test_a_gradient_computed_as_a_transposed_view_arrives_contiguous():
    a = tc.tensor(np.ones((3, 4)), requires_grad=True)
    (a.T * tc.tensor(np.arange(12.0).reshape(4, 3))).sum().backward()
    assert a.grad.data.flags.c_contiguous and a.grad.numpy().tolist() == np.arange(12.0).reshape(4, 3).T.tolist()
