"""Arithmetic, elementwise functions and reductions: forward against NumPy, float64 gradcheck over
Hypothesis-drawn shapes (broadcast pairs included), dtype rules, and properties of the backward pass."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import tinyconv as tc

SHAPES = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
PAIRS = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)
SEEDS = st.integers(0, 2**32 - 1)


def leaf(values):
    return tc.Tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


def uniform(rng, shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, shape)


def away_from_zero(rng, shape, lo=0.5, hi=2.0):
    return rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


def off_grid(rng, shape):
    """Values k/2 + 1/4: never equal to an integer bound or to a value of ``on_grid``."""
    return rng.integers(-4, 4, shape) / 2 + 0.25


def on_grid(rng, shape):
    return rng.integers(-4, 4, shape) / 2.0


def distinct(rng, shape):
    """Values 0.5 apart in random order: maxima and minima are never tied."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.5 - n / 4).reshape(shape)


# -- binary operators with broadcasting -----------------------------------------------------------------
BINARY = {  # name: (tinyconv expression, NumPy reference, value generator of a, of b)
    "add": (lambda a, b: a + b, np.add, uniform, uniform),
    "sub": (lambda a, b: a - b, np.subtract, uniform, uniform),
    "mul": (lambda a, b: a * b, np.multiply, uniform, uniform),
    "div": (lambda a, b: a / b, np.divide, uniform, away_from_zero),
    "pow": (lambda a, b: a ** b, np.power, lambda r, s: uniform(r, s, 0.5, 2.0), uniform),
    "maximum": (tc.maximum, np.maximum, off_grid, on_grid),
    "minimum": (tc.minimum, np.minimum, off_grid, on_grid),
}


@pytest.mark.parametrize("name", BINARY)
@given(shapes=PAIRS, seed=SEEDS)
def test_binary_ops_forward_and_gradcheck_with_broadcasting(name, shapes, seed):
    fn, ref, gen_a, gen_b = BINARY[name]
    rng = np.random.default_rng(seed)
    (sa, sb), _ = shapes
    a, b = leaf(gen_a(rng, sa)), leaf(gen_b(rng, sb))
    y = fn(a, b)
    np.testing.assert_allclose(y.numpy(), ref(a.numpy(), b.numpy()), rtol=1e-12)
    assert tc.gradcheck(fn, [a, b])


@given(shapes=PAIRS, seed=SEEDS)
def test_broadcast_gradients_have_each_inputs_shape_and_sum_over_broadcast_axes(shapes, seed):
    (sa, sb), out = shapes
    rng = np.random.default_rng(seed)
    a, b = leaf(uniform(rng, sa)), leaf(uniform(rng, sb))
    (a * b).sum().backward()
    assert a.grad.shape == tuple(sa) and b.grad.shape == tuple(sb)
    # d/da sum(a*b) = b summed over the axes a was broadcast along
    b_full = np.broadcast_to(b.numpy(), out)
    expected = b_full.sum(axis=tuple(range(len(out) - len(sa)))) if len(out) > len(sa) else b_full
    axes = tuple(i for i, n in enumerate(sa) if n == 1 and expected.shape[i] != 1)
    np.testing.assert_allclose(a.grad.numpy(), expected.sum(axis=axes, keepdims=True).reshape(sa), rtol=1e-12)


@pytest.mark.parametrize("op, sym", [(lambda a, b: a + b, r"\+"), (lambda a, b: a * b, r"\*"),
                                     (lambda a, b: a / b, "/"), (lambda a, b: a - b, "-"),
                                     (lambda a, b: a ** b, r"\*\*"), (tc.maximum, "maximum")])
def test_incompatible_shapes_name_the_operator_and_both_shapes(op, sym):
    with pytest.raises(ValueError, match=rf"operator {sym}: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        op(tc.ones(2, 3), tc.ones(4))


# -- matmul ---------------------------------------------------------------------------------------------------
def naive_matmul(a, b):
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    A, B = np.broadcast_to(a2, batch + a2.shape[-2:]), np.broadcast_to(b2, batch + b2.shape[-2:])
    out = np.zeros(batch + (a2.shape[-2], b2.shape[-1]))
    for idx in np.ndindex(*batch):
        for i in range(A.shape[-2]):
            for j in range(B.shape[-1]):
                out[idx + (i, j)] = sum(A[idx + (i, k)] * B[idx + (k, j)] for k in range(A.shape[-1]))
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return out


@given(batch=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=2),
       n=st.integers(1, 3), k=st.integers(1, 3), m=st.integers(1, 3),
       vec=st.sampled_from(["", "a", "b", "ab"]), seed=SEEDS)
def test_matmul_matches_a_naive_loop_and_gradchecks(batch, n, k, m, vec, seed):
    rng = np.random.default_rng(seed)
    (ba, bb), _ = batch
    sa = (k,) if "a" in vec else tuple(ba) + (n, k)
    sb = (k,) if "b" in vec else tuple(bb) + (k, m)
    a, b = leaf(uniform(rng, sa)), leaf(uniform(rng, sb))
    np.testing.assert_allclose((a @ b).numpy(), naive_matmul(a.numpy(), b.numpy()), rtol=1e-12, atol=1e-12)
    assert tc.gradcheck(lambda a, b: a @ b, [a, b])


def test_matmul_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"operator @: shapes \(2, 3\) and \(4, 5\) are not aligned \(3 != 4\)"):
        tc.ones(2, 3) @ tc.ones(4, 5)
    with pytest.raises(ValueError, match="at least one dimension"):
        tc.tensor(2.0) @ tc.ones(2)


# -- unary functions ---------------------------------------------------------------------------------------------
UNARY = {  # name: (tinyconv expression, NumPy reference, value generator)
    "neg": (lambda x: -x, np.negative, uniform),
    "exp": (tc.exp, np.exp, uniform),
    "log": (tc.log, np.log, lambda r, s: uniform(r, s, 0.2, 3.0)),
    "sqrt": (tc.sqrt, np.sqrt, lambda r, s: uniform(r, s, 0.2, 3.0)),
    "abs": (tc.abs, np.abs, away_from_zero),
    "abs_builtin": (abs, np.abs, away_from_zero),
    "clip": (lambda x: tc.clip(x, -1, 1), lambda x: np.clip(x, -1, 1), off_grid),
    "clip_min": (lambda x: x.clamp(min=0.0), lambda x: np.maximum(x, 0), off_grid),
    "clip_max": (lambda x: x.clip(max=0.0), lambda x: np.minimum(x, 0), off_grid),
    "square": (lambda x: x ** 2, np.square, uniform),
    "rsqrt": (lambda x: x ** -0.5, lambda x: x ** -0.5, lambda r, s: uniform(r, s, 0.2, 3.0)),
    "two_pow": (lambda x: 2 ** x, lambda x: 2.0 ** x, uniform),
    "rsub": (lambda x: 3 - x, lambda x: 3 - x, uniform),
    "rdiv": (lambda x: 3 / x, lambda x: 3 / x, away_from_zero),
    "ndarray_left": (lambda x: np.full(x.shape, 1.5) * x, lambda x: 1.5 * x, uniform),
}


@pytest.mark.parametrize("name", UNARY)
@given(shape=SHAPES, seed=SEEDS)
def test_unary_ops_forward_and_gradcheck(name, shape, seed):
    fn, ref, gen = UNARY[name]
    x = leaf(gen(np.random.default_rng(seed), shape))
    y = fn(x)
    assert isinstance(y, tc.Tensor)
    np.testing.assert_allclose(y.numpy(), ref(x.numpy()), rtol=1e-12)
    assert tc.gradcheck(fn, [x])


@given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3), seed=SEEDS)
def test_where_broadcasts_and_routes_the_gradient(shapes, seed):
    rng = np.random.default_rng(seed)
    (sc, sa, sb), _ = shapes
    cond = tc.Tensor(rng.random(sc) > 0.5)
    a, b = leaf(uniform(rng, sa)), leaf(uniform(rng, sb))
    np.testing.assert_array_equal(tc.where(cond, a, b).numpy(), np.where(cond.numpy(), a.numpy(), b.numpy()))
    assert tc.gradcheck(lambda a, b: tc.where(cond, a, b), [a, b])
    assert tc.gradcheck(lambda a: tc.where(cond.numpy(), a, 0.0), [a])


def test_where_shape_error_names_all_three_shapes():
    with pytest.raises(ValueError, match=r"where: condition \(3,\), a \(2, 3\) and b \(2,\) cannot be broadcast"):
        tc.where(np.ones(3, bool), tc.ones(2, 3), tc.ones(2))


def test_maximum_and_minimum_split_the_gradient_of_ties_like_torch(torch):
    a, b = np.array([1.0, 2.0, 3.0, 5.0]), np.array([1.0, 1.0, 4.0, 5.0])
    for ours, theirs in ((tc.maximum, torch.maximum), (tc.minimum, torch.minimum)):
        x, y = leaf(a), leaf(b)
        tx, ty = (torch.tensor(v, requires_grad=True) for v in (a, b))
        (ours(x, y) * tc.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
        (theirs(tx, ty) * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
        np.testing.assert_array_equal(y.grad.numpy(), ty.grad.numpy())


def test_gradients_at_the_kinks_are_the_documented_subgradients():
    x = leaf([0.0, 1.0, -1.0])
    (tc.abs(x) + tc.maximum(x, 0.0)).sum().backward()
    # |x|' = sign(x) (0 at 0); maximum(x, 0) splits the gradient half and half on the tie at 0 (PyTorch's rule)
    np.testing.assert_array_equal(x.grad.numpy(), [0 + 0.5, 1 + 1, -1 + 0])
    c = leaf([-1.0, 0.0, 2.0])
    c.clip(-1, 1).sum().backward()
    np.testing.assert_array_equal(c.grad.numpy(), [1, 1, 0])  # the boundary itself is inside


# -- reductions ---------------------------------------------------------------------------------------------------
@st.composite
def shape_and_axis(draw):
    shape = draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
    nd = len(shape)
    axis = draw(st.one_of(st.none(), st.integers(-nd, nd - 1),
                          st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True).map(tuple)))
    return shape, axis


REDUCTIONS = {  # name: (tinyconv, NumPy reference)
    "sum": (tc.sum, np.sum),
    "mean": (tc.mean, np.mean),
    "amax": (tc.amax, np.max),
    "amin": (tc.amin, np.min),
    "var_biased": (lambda x, **kw: tc.var(x, correction=0, **kw), lambda x, **kw: np.var(x, **kw)),
    "var": (tc.var, lambda x, **kw: np.var(x, ddof=1, **kw)),
}


@pytest.mark.parametrize("name", REDUCTIONS)
@given(sa=shape_and_axis(), keepdims=st.booleans(), seed=SEEDS)
def test_reductions_forward_and_gradcheck(name, sa, keepdims, seed):
    shape, axis = sa
    fn, ref = REDUCTIONS[name]
    axes = range(len(shape)) if axis is None else np.atleast_1d(axis)
    if name == "var" and np.prod([shape[a] for a in axes]) < 2:
        return  # the unbiased variance of one element divides by zero
    x = leaf(distinct(np.random.default_rng(seed), shape))
    expected = ref(x.numpy(), axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(fn(x, axis=axis, keepdims=keepdims).numpy(), expected, rtol=1e-12, atol=1e-12)
    # PyTorch's spelling gives the same
    np.testing.assert_allclose(fn(x, dim=axis, keepdim=keepdims).numpy(), expected, rtol=1e-12, atol=1e-12)
    assert tc.gradcheck(lambda x: fn(x, axis=axis, keepdims=keepdims), [x])


def test_reduction_methods_and_axis_errors():
    x = tc.tensor([[1.0, 5.0], [3.0, 2.0]])
    np.testing.assert_array_equal(x.sum(1).numpy(), [6, 5])
    np.testing.assert_array_equal(x.max(dim=0, keepdim=True).values.numpy(), [[3, 5]])
    np.testing.assert_array_equal(x.amin(axis=(0, 1)).numpy(), 1)
    with pytest.raises(TypeError, match="amin"):
        x.min(axis=(0, 1))  # several dims: values only, under its own name (as PyTorch)
    np.testing.assert_allclose(x.mean().numpy(), 2.75)
    np.testing.assert_allclose(x.var().numpy(), np.var(x.numpy(), ddof=1))
    np.testing.assert_allclose(x.var(unbiased=False).numpy(), np.var(x.numpy()))
    assert tc.sum(tc.tensor(3.0), dim=0).item() == 3.0
    with pytest.raises(ValueError, match="axis 2 is out of range for a tensor of 2 dimensions"):
        x.sum(axis=2)
    with pytest.raises(ValueError, match="repeats an axis"):
        x.sum(axis=(1, -1))


def test_tied_maxima_share_the_gradient():
    x = leaf([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]])
    x.amax(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0.5, 0.5], [0.5, 0, 0.5]])


# -- dtypes --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_op_keeps_the_floating_dtype_end_to_end(dtype):
    x = tc.rand(2, 3, dtype=dtype, requires_grad=True)
    w = tc.rand(3, 2, dtype=dtype, requires_grad=True)
    outs = [x + 1, 1 + x, x - 2.5, 2.5 - x, x * 0.5, x / 3, 3 / (x + 1), x ** 2, 2 ** x, -x, x @ w,
            x * np.float64(2), x + np.array(1.0), x * np.int64(3), x + np.ones(3, np.int64),
            tc.exp(x), tc.log(x + 1), tc.sqrt(x), tc.abs(x), x.clip(0.2, 0.8), tc.maximum(x, 0.5),
            tc.minimum(x, 0.5), tc.where(x > 0.5, x, 0.0), x.sum(), x.mean(0), x.var(1), x.max(), x.min(1).values,
            x.amin(1)]
    for i, y in enumerate(outs):
        assert y.dtype == dtype, f"output {i} has dtype {y.dtype}"
    sum(y.sum() for y in outs).backward()
    assert x.grad.dtype == dtype and w.grad.dtype == dtype


def test_integer_tensors_stay_integer_or_become_float32():
    i = tc.tensor([1, 2, 3])
    assert i.dtype == np.int64
    assert (i + 1).dtype == np.int64 and (i * 2).dtype == np.int64 and (-i).dtype == np.int64
    assert (i.sum()).dtype == np.int64 and i.max().item() == 3
    # an integer meeting a float computes in float32 (as PyTorch), never float64
    for y in (i * 2.5, 2.5 * i, i / 2, i / i, i + tc.ones(3), tc.exp(i), tc.sqrt(i), i.mean(), i ** 0.5):
        assert y.dtype == np.float32
    np.testing.assert_allclose((i / 2).numpy(), [0.5, 1.0, 1.5])
    assert (i + tc.ones(3, dtype=tc.float64)).dtype == np.float64
    assert (tc.tensor([True, False]) + 1).dtype == np.int64


# -- properties of the backward pass ----------------------------------------------------------------------------
def _composite(x, w):
    return tc.exp(x @ w * 0.5) / (1 + (x ** 2).sum(axis=1, keepdims=True)) - tc.maximum(x @ w, 0.1)


@given(n=st.integers(1, 3), k=st.integers(1, 3), m=st.integers(1, 3), seed=SEEDS,
       alpha=st.floats(-3, 3), beta=st.floats(-3, 3))
def test_backward_is_linear_in_the_output_gradient(n, k, m, seed, alpha, beta):
    rng = np.random.default_rng(seed)
    x, w = leaf(uniform(rng, (n, k))), leaf(uniform(rng, (k, m)))
    v1, v2 = rng.standard_normal((n, m)), rng.standard_normal((n, m))
    grads = []
    for v in (v1, v2, alpha * v1 + beta * v2):
        x.grad = w.grad = None
        _composite(x, w).backward(v)
        grads.append((x.grad.numpy(), w.grad.numpy()))
    for i in range(2):
        np.testing.assert_allclose(grads[2][i], alpha * grads[0][i] + beta * grads[1][i], rtol=1e-9, atol=1e-9)


@given(shape=SHAPES, seed=SEEDS)
def test_sum_gives_ones_and_mean_gives_one_over_n(shape, seed):
    x = leaf(uniform(np.random.default_rng(seed), shape))
    x.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(shape))
    x.grad = None
    x.mean().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(shape, 1 / x.size))


@given(shapes=PAIRS, seed=SEEDS)
def test_a_second_backward_doubles_the_accumulated_gradient(shapes, seed):
    rng = np.random.default_rng(seed)
    (sa, sb), _ = shapes
    a, b = leaf(uniform(rng, sa)), leaf(away_from_zero(rng, sb))
    (tc.exp(a) / b).sum().backward()
    first = a.grad.numpy().copy(), b.grad.numpy().copy()
    (tc.exp(a) / b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 2 * first[0], rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), 2 * first[1], rtol=1e-12)


def test_activation_methods_match_their_functions_and_torch(torch):
    import tinyconv.functional as F
    a = np.random.default_rng(4).standard_normal((2, 5))
    for name, args in (("relu", ()), ("sigmoid", ()), ("tanh", ()), ("softmax", (1,)), ("log_softmax", (0,))):
        x, y = leaf(a), leaf(a)
        tx = torch.tensor(a, requires_grad=True)
        out, ref, theirs = getattr(x, name)(*args), getattr(F, name)(y, *args), getattr(tx, name)(*args)
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0, atol=0, err_msg=name)
        np.testing.assert_allclose(out.numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=name)
        w = np.arange(10.0).reshape(2, 5)
        (out * tc.tensor(w)).sum().backward()
        (theirs * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)
