"""The constructors (tinyconv/creation.py): tensor, zeros/ones/full/empty, arange, the random ones, *_like."""
import numpy as np

import tinyconv as tc


def test_tensor_copies_and_picks_float32_for_python_floats():
    arr = np.ones(3)
    t = tc.tensor(arr)
    assert t.dtype == np.float64 and t.data is not arr  # arrays keep their dtype, and are copied
    t.data[0] = 5
    assert arr[0] == 1
    assert tc.tensor([1.5, 2]).dtype == np.float32 and tc.tensor(2.5).shape == ()
    assert tc.tensor([1, 2]).dtype == np.int64 and tc.tensor([True]).dtype == np.bool_
    assert tc.tensor(np.float64(2.0)).dtype == np.float64
    assert tc.tensor([1, 2], dtype=tc.float64).dtype == np.float64
    r = tc.tensor([1.0], requires_grad=True)
    assert r.requires_grad and r.is_leaf
    assert tc.tensor(r).requires_grad is False
    shared = np.zeros(2)
    assert tc.from_numpy(shared).data is shared


def test_filled_constructors_take_varargs_or_a_sequence():
    for make, value in ((tc.zeros, 0), (tc.ones, 1)):
        a, b = make(2, 3), make((2, 3))
        assert a.shape == b.shape == (2, 3) and a.dtype == np.float32
        np.testing.assert_array_equal(a.numpy(), np.full((2, 3), value))
        assert make(4, dtype=tc.float64, requires_grad=True).requires_grad
    assert tc.empty(3, 1).shape == (3, 1)
    assert tc.full((2, 2), 1.5).dtype == np.float32 and tc.full(3, 7).dtype == np.int64
    assert tc.full((2,), True).dtype == np.bool_ and tc.full((2,), 7, dtype=tc.float64).dtype == np.float64
    np.testing.assert_array_equal(tc.full((2, 2), 1.5).numpy(), np.full((2, 2), 1.5))


def test_arange_follows_its_arguments_dtype():
    np.testing.assert_array_equal(tc.arange(4).numpy(), [0, 1, 2, 3])
    assert tc.arange(4).dtype == np.int64
    np.testing.assert_array_equal(tc.arange(1, 7, 2).numpy(), [1, 3, 5])
    a = tc.arange(0, 1, 0.25)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a.numpy(), [0, 0.25, 0.5, 0.75])
    assert tc.arange(3, dtype=tc.float64).dtype == np.float64


def test_random_constructors_shapes_dtypes_and_ranges():
    r = tc.rand(1000)
    assert r.dtype == np.float32 and 0 <= r.numpy().min() and r.numpy().max() < 1
    n = tc.randn(2, 3, dtype=tc.float64, requires_grad=True)
    assert n.shape == (2, 3) and n.dtype == np.float64 and n.requires_grad
    i = tc.randint(0, 3, (50,))
    assert i.dtype == np.int64 and set(i.numpy().tolist()) <= {0, 1, 2}


def test_like_constructors_copy_shape_dtype_and_device():
    x = tc.randn(2, 3, dtype=tc.float64)
    for make in (tc.zeros_like, tc.ones_like, tc.randn_like, tc.rand_like, tc.empty_like):
        y = make(x)
        assert y.shape == (2, 3) and y.dtype == np.float64 and y.device == "cpu" and not y.requires_grad
    assert tc.zeros_like(x, dtype=tc.float32).dtype == np.float32
    f = tc.full_like(x, 2.0)
    assert f.dtype == np.float64 and (f.numpy() == 2).all()
