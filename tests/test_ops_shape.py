"""Shape operations: reshape/view, transpose/permute, flatten, (un)squeeze, indexing, cat/stack/split/chunk,
pad, broadcast_to/expand.  Forward against NumPy, float64 gradcheck over Hypothesis-drawn shapes, round
trips, and the errors for bad input."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import array_shapes, basic_indices

import tinyconv as tc

SHAPES = array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3)
SEEDS = st.integers(0, 2**32 - 1)


def leaf(rng, shape):
    return tc.Tensor(rng.uniform(-2, 2, shape), requires_grad=True)


@st.composite
def shape_and_permutation(draw):
    shape = draw(SHAPES)
    return shape, tuple(draw(st.permutations(range(len(shape)))))


@given(sp=shape_and_permutation(), seed=SEEDS)
def test_permute_matches_numpy_gradchecks_and_round_trips(sp, seed):
    shape, perm = sp
    x = leaf(np.random.default_rng(seed), shape)
    y = x.permute(*perm)
    np.testing.assert_array_equal(y.numpy(), np.transpose(x.numpy(), perm))
    back = y.permute(tuple(np.argsort(perm)))
    np.testing.assert_array_equal(back.numpy(), x.numpy())
    assert tc.gradcheck(lambda x: x.permute(perm), [x])


@given(shape=SHAPES, seed=SEEDS, data=st.data())
def test_transpose_swaps_two_axes_and_T_reverses_all(shape, seed, data):
    x = leaf(np.random.default_rng(seed), shape)
    d0, d1 = data.draw(st.integers(-len(shape), len(shape) - 1)), data.draw(st.integers(0, len(shape) - 1))
    np.testing.assert_array_equal(x.transpose(d0, d1).numpy(), np.swapaxes(x.numpy(), d0, d1))
    np.testing.assert_array_equal(x.T.numpy(), x.numpy().T)
    assert tc.gradcheck(lambda x: tc.transpose(x, d0, d1), [x])


@given(shape=SHAPES, seed=SEEDS, data=st.data())
def test_reshape_view_flatten_round_trip_and_gradcheck(shape, seed, data):
    x = leaf(np.random.default_rng(seed), shape)
    n = x.size
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    d = data.draw(st.sampled_from(divisors))
    y = x.reshape(d, -1)
    assert y.shape == (d, n // d)
    np.testing.assert_array_equal(y.numpy(), x.numpy().reshape(d, -1))
    np.testing.assert_array_equal(y.view(shape).numpy(), x.numpy())  # round trip
    s = data.draw(st.integers(0, len(shape) - 1))
    e = data.draw(st.integers(s, len(shape) - 1))
    f = x.flatten(s, e)
    assert f.shape == shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:]
    assert tc.gradcheck(lambda x: x.reshape(d, -1) * tc.tensor(np.arange(n).reshape(d, -1)), [x])
    assert tc.gradcheck(lambda x: tc.flatten(x, s, e), [x])


def test_reshape_flatten_squeeze_unsqueeze_details():
    x = tc.zeros(2, 1, 3, 1)
    assert x.squeeze().shape == (2, 3) and x.squeeze(1).shape == (2, 3, 1) and x.squeeze(0).shape == x.shape
    assert x.squeeze(-1).shape == (2, 1, 3)
    assert x.unsqueeze(0).shape == (1, 2, 1, 3, 1) and x.unsqueeze(-1).shape == (2, 1, 3, 1, 1)
    assert x.flatten().shape == (6,) and x.flatten(1).shape == (2, 3) and tc.tensor(1.0).flatten().shape == (1,)
    assert tc.reshape(x, [3, 2]).shape == (3, 2) and x.view(-1, 2).shape == (3, 2)
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 1, 3, 1\) \(6 elements\) "
                                         r"into \(4, -1\)"):
        x.reshape(4, -1)
    with pytest.raises(ValueError, match=r"\(0, 0, 1, 2\) is not a permutation"):
        x.permute(0, 0, 1, 2)


# -- indexing ------------------------------------------------------------------------------------------------
@given(shape=SHAPES, seed=SEEDS, data=st.data())
def test_basic_indexing_and_slicing_match_numpy_and_gradcheck(shape, seed, data):
    x = leaf(np.random.default_rng(seed), shape)
    index = data.draw(basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    np.testing.assert_array_equal(x[index].numpy(), x.numpy()[index])
    assert tc.gradcheck(lambda x: x[index], [x])


@given(shape=SHAPES, seed=SEEDS, k=st.integers(1, 5))
def test_fancy_indexing_adds_the_gradient_of_repeated_picks(shape, seed, k):
    rng = np.random.default_rng(seed)
    x = leaf(rng, shape)
    idx = rng.integers(0, shape[0], k)  # repeats likely
    np.testing.assert_array_equal(x[idx].numpy(), x.numpy()[idx])
    x[idx].sum().backward()
    expected = np.bincount(idx, minlength=shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
    np.testing.assert_array_equal(x.grad.numpy(), np.broadcast_to(expected, shape))
    assert tc.gradcheck(lambda x: x[idx.tolist()] * 2, [x])
    last = tc.tensor(rng.integers(0, shape[-1], k))  # a Tensor index on the last axis
    assert tc.gradcheck(lambda x: x[..., last], [x])


@given(shape=SHAPES, seed=SEEDS)
def test_boolean_masks_select_and_route_the_gradient(shape, seed):
    rng = np.random.default_rng(seed)
    x = leaf(rng, shape)
    mask = x > 0
    np.testing.assert_array_equal(x[mask].numpy(), x.numpy()[x.numpy() > 0])
    x[mask].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), (x.numpy() > 0).astype(float))
    assert tc.gradcheck(lambda x: x[mask.numpy()] ** 2, [x])


# -- cat / stack / split / chunk ------------------------------------------------------------------------------
@st.composite
def cat_case(draw):
    shape = draw(SHAPES)
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    shapes = [shape[:dim % len(shape)] + (s,) + shape[dim % len(shape) + 1:] for s in sizes]
    return shapes, dim, sizes


@given(case=cat_case(), seed=SEEDS)
def test_cat_matches_numpy_gradchecks_and_split_undoes_it(case, seed):
    shapes, dim, sizes = case
    rng = np.random.default_rng(seed)
    xs = [leaf(rng, s) for s in shapes]
    y = tc.cat(xs, dim=dim)
    np.testing.assert_array_equal(y.numpy(), np.concatenate([x.numpy() for x in xs], axis=dim))
    parts = tc.split(y, sizes, dim=dim)
    assert len(parts) == len(xs)
    for p, x in zip(parts, xs):
        np.testing.assert_array_equal(p.numpy(), x.numpy())
    assert tc.gradcheck(lambda *xs: tc.cat(xs, dim=dim), xs)
    assert tc.gradcheck(lambda y: tc.split(y, sizes, dim=dim), [y.detach().requires_grad_()])


@given(shape=SHAPES, n=st.integers(1, 3), seed=SEEDS, data=st.data())
def test_stack_adds_an_axis_and_gradchecks(shape, n, seed, data):
    rng = np.random.default_rng(seed)
    xs = [leaf(rng, shape) for _ in range(n)]
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    np.testing.assert_array_equal(tc.stack(xs, dim=dim).numpy(), np.stack([x.numpy() for x in xs], axis=dim))
    assert tc.gradcheck(lambda *xs: tc.stack(xs, dim), xs)


@given(shape=SHAPES, seed=SEEDS, data=st.data())
def test_split_by_size_and_chunk_follow_torch_and_use_only_some_outputs(shape, seed, data):
    x = leaf(np.random.default_rng(seed), shape)
    dim = data.draw(st.integers(0, len(shape) - 1))
    size = data.draw(st.integers(1, shape[dim]))
    parts = x.split(size, dim=dim)
    assert [p.shape[dim] for p in parts] == [min(size, shape[dim] - i) for i in range(0, shape[dim], size)]
    chunks = x.chunk(2, dim=dim)
    assert sum(c.shape[dim] for c in chunks) == shape[dim]
    # only the first part feeds the loss: the others get zero gradient
    parts[0].sum().backward()
    g = np.zeros(shape)
    g[(slice(None),) * dim + (slice(0, size),)] = 1
    np.testing.assert_array_equal(x.grad.numpy(), g)


def test_cat_stack_split_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"cat: tensor 1 has shape \(2, 4\), incompatible with tensor 0 of "
                                         r"shape \(3, 4\) along axes other than 1"):
        tc.cat([tc.ones(3, 4), tc.ones(2, 4)], dim=1)
    with pytest.raises(ValueError, match="non-empty"):
        tc.cat([])
    with pytest.raises(ValueError, match="non-empty"):
        tc.stack([])
    with pytest.raises(ValueError, match=r"stack: expected tensors of one shape, got \[\(2,\), \(3,\)\]"):
        tc.stack([tc.ones(2), tc.ones(3)])
    with pytest.raises(ValueError, match=r"split: sizes \[1, 1\] do not add up to 3"):
        tc.ones(3).split([1, 1])


# -- pad, broadcast_to, expand ----------------------------------------------------------------------------------
@given(shape=array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=3), seed=SEEDS,
       pads=st.lists(st.integers(-1, 2), min_size=2, max_size=4), value=st.sampled_from([0.0, 1.5]))
def test_pad_matches_numpy_and_gradchecks(shape, seed, pads, value):
    pads = pads[:2 * min(len(pads) // 2, len(shape))]
    x = leaf(np.random.default_rng(seed), shape)
    y = tc.functional.pad(x, pads, value=value)
    # reference: crop the negative widths, then pad the positive ones (last axis first, as F.pad)
    ref = x.numpy()
    k = len(pads) // 2
    for i in range(k):
        ax, lo, hi = len(shape) - 1 - i, pads[2 * i], pads[2 * i + 1]
        sl = [slice(None)] * len(shape)
        sl[ax] = slice(max(-lo, 0), ref.shape[ax] - max(-hi, 0))
        ref = ref[tuple(sl)]
        widths = [(0, 0)] * len(shape)
        widths[ax] = (max(lo, 0), max(hi, 0))
        ref = np.pad(ref, widths, constant_values=value)
    np.testing.assert_array_equal(y.numpy(), ref)
    assert tc.gradcheck(lambda x: tc.functional.pad(x, pads, value=value), [x])


def test_broadcast_to_and_expand_sum_the_gradient_back():
    x = tc.Tensor(np.array([[1.0], [2.0]]), requires_grad=True)
    assert tc.gradcheck(lambda x: tc.functional.broadcast_to(x, (3, 2, 4)), [x])
    y = x.expand(3, -1, 4)
    assert y.shape == (3, 2, 4)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[12.0], [12.0]])
