"""In-place writes: ``x[index] = v`` recorded by autograd, version counters, and the refusals that keep
gradients right (a leaf that requires grad, a view of another tensor, a saved tensor written since)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinyconv as tc

INDICES = [
    (0, 1),
    (slice(None), 1),
    (slice(0, 2), slice(1, None)),
    (Ellipsis, 0),
    np.array([1, 0]),
    (np.array([0, 1]), np.array([2, 0])),
    np.array([[True, False, True], [False, True, True]]),
]


def leaf(values):
    return tc.Tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


def written(a, v, index, w):
    b = a * 1.5
    b[index] = v * 2.0
    return b * w


@given(index=st.sampled_from(INDICES), broadcast=st.booleans(), seed=st.integers(0, 100))
def test_setitem_gradients_pass_gradcheck(index, broadcast, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((2, 3))
    target_shape = a[index].shape
    v = rng.standard_normal(target_shape[-1:] if broadcast and target_shape else target_shape)
    w = tc.tensor(rng.standard_normal((2, 3)))
    assert tc.gradcheck(lambda a, v: written(a, v, index, w), [leaf(a), leaf(v)])


@pytest.mark.parametrize("index", INDICES, ids=str)
def test_setitem_matches_torch(torch, index):
    rng = np.random.default_rng(1)
    a, w = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    v = rng.standard_normal(a[index].shape)
    x, y = leaf(a), leaf(v)
    out = written(x, y, index, tc.tensor(w))
    out.sum().backward()
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(v, requires_grad=True)
    tb = tx * 1.5
    tindex = tuple(torch.tensor(i) if isinstance(i, np.ndarray) else i for i in
                   (index if isinstance(index, tuple) else (index,)))
    tb[tindex] = ty * 2.0
    (tb * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(out.numpy(), (tb * torch.tensor(w)).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), rtol=1e-12)


def test_functions_that_used_x_before_the_write_keep_its_old_history():
    a, v = leaf([1.0, 2.0, 3.0]), leaf(4.0)
    y = a * 2.0
    before = y + 1.0          # add saves nothing of y: the write does not concern it
    y[0] = v * 3.0
    (before.sum() + y.sum()).backward()
    np.testing.assert_array_equal(a.grad.numpy(), [2.0 + 0.0, 2.0 + 2.0, 2.0 + 2.0])
    assert v.grad.item() == 3.0
    assert y.numpy().tolist() == [12.0, 4.0, 6.0] and before.numpy().tolist() == [3.0, 5.0, 7.0]


def test_a_saved_input_written_since_makes_backward_raise():
    a = leaf([1.0, 2.0])
    y = a * 1.0
    z = y * y                 # saves y
    y[1] = 0.0
    assert y._version == 1
    with pytest.raises(RuntimeError, match=r"modified by an in-place operation: input 0 of Mul, of shape "
                                           r"\(2,\), is at version 1; expected version 0"):
        z.sum().backward()


def test_a_saved_output_written_since_makes_backward_raise():
    y = leaf([0.5, 1.0]).exp()  # exp saves its output
    y[0] = 1.0
    with pytest.raises(RuntimeError, match="the output of Exp .* was modified by an in-place operation"):
        y.sum().backward()


def test_zero_bumps_the_version_too():
    a = leaf([1.0, 2.0])
    y = a * 1.0
    z = y * y
    y.zero_()
    with pytest.raises(RuntimeError, match="in-place"):
        z.sum().backward()


def test_a_leaf_that_requires_grad_is_written_only_under_no_grad():
    w = leaf([1.0, 2.0, 3.0])
    with pytest.raises(RuntimeError, match=r"leaf tensor that requires grad.*no_grad"):
        w[0] = 0.0
    with tc.no_grad():
        w[0] = 0.0
    assert w.numpy().tolist() == [0.0, 2.0, 3.0] and w.is_leaf and w._version == 1
    (w * 2.0).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 2.0, 2.0])


def test_writing_into_a_recorded_view_is_refused():
    y = leaf(np.arange(6.0)) * 1.0
    view = y[1:3]
    with pytest.raises(RuntimeError, match="view of the input of GetItem"):
        view[0] = 5.0
    copy = y[1:3].clone()
    copy[0] = 5.0
    assert y.numpy()[1] == 1.0 and copy.numpy().tolist() == [5.0, 2.0]


def test_plain_tensors_take_writes_like_arrays():
    t = tc.zeros(2, 3)
    t[1, :] = tc.tensor(np.array([1.0, 2.0, 3.0], dtype=np.float32))
    t[0, 0] = 7
    mask = t > 1.5
    t[mask] = -1.0
    assert t.dtype == np.float32 and not t.requires_grad
    assert t.numpy().tolist() == [[-1.0, 0.0, 0.0], [1.0, -1.0, -1.0]]


def test_a_constant_written_with_a_tensor_that_requires_grad_joins_the_graph():
    t = tc.zeros(3, dtype=tc.float64)
    v = leaf([2.0])
    t[1:2] = v
    assert t.requires_grad and not t.is_leaf
    (t * 5.0).sum().backward()
    assert v.grad.numpy().tolist() == [5.0]


def test_a_value_of_the_wrong_shape_gets_a_clear_error():
    t = tc.zeros(2, 3)
    with pytest.raises(ValueError, match=r"a value of shape \(2,\) cannot be written into x of shape \(2, 3\)"):
        t[0] = tc.zeros(2)
