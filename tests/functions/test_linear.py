"""linear, channel_shuffle and the composed layers of CNNs (residual add, concat, SE broadcast multiply)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinyconv as tc
import tinyconv.functional as F


def _linear_naive(x, w, b):
    y = np.zeros(x.shape[:-1] + (w.shape[0],))
    for idx in np.ndindex(*x.shape[:-1]):
        for o in range(w.shape[0]):
            y[idx + (o,)] = sum(x[idx + (i,)] * w[o, i] for i in range(w.shape[1])) + (0 if b is None else b[o])
    return y


@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2), fin=st.integers(1, 4), fout=st.integers(1, 4),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_naive_and_gradcheck(lead, fin, fout, bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal(tuple(lead) + (fin,)), rng.standard_normal((fout, fin)), rng.standard_normal(fout)
    b = b if bias else None
    t = [tc.tensor(a, dtype=np.float64, requires_grad=True) if a is not None else None for a in (x, w, b)]
    np.testing.assert_allclose(F.linear(*t).numpy(), _linear_naive(x, w, b), rtol=1e-12, atol=1e-12)
    assert tc.gradcheck(F.linear, t)


def test_linear_matches_torch(torch):
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in [(2, 3, 7), (5, 7), (5,)])
    gy = rng.standard_normal((2, 3, 5)).astype(np.float32)
    ours = [tc.tensor(a, requires_grad=True) for a in (x, w, b)]
    F.linear(*ours).backward(gy)
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = torch.nn.functional.linear(*theirs)
    y.backward(torch.tensor(gy))
    np.testing.assert_allclose(F.linear(*ours).numpy(), y.detach().numpy(), rtol=1e-4, atol=1e-5)
    for a, t in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", ["numpy", "cpu"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (0, 3, 5), (3, 0, 5), (5,)])
def test_linear_kernels_flatten_leading_axes(impl, shape):
    """The kernels run one product over the flattened leading axes (kernels/linear.py): a channels-last view
    (ConvNeXt's permuted activations), empty leading axes and a vector give what the plain product gives."""
    import tinyconv_kernels.linear as K
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape[:-2] + (shape[-1], shape[-2]) if len(shape) > 1 else shape)
    x = (np.swapaxes(x, -1, -2) if x.ndim > 1 else x).astype(np.float32)    # a strided view, as after permute
    w, b = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    forward, backward = getattr(K, f"linear_forward_{impl}"), getattr(K, f"linear_backward_{impl}")
    want = np.einsum("...i,oi->...o", x.astype(np.float64), w.astype(np.float64)) + b
    y = forward(x, w, b)
    assert y.shape == want.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    gy = rng.standard_normal(want.shape).astype(np.float32)
    gx, gw = backward(gy, x, w)
    assert gx.shape == x.shape and gw.shape == w.shape
    np.testing.assert_allclose(gx, gy.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, gy.reshape(-1, 6).T.astype(np.float64) @ x.reshape(-1, 5), rtol=1e-5, atol=1e-5)
    # a float64 bias promotes as NumPy's y + b does (not cast into the float32 product in place)
    assert forward(x, w, b.astype(np.float64)).dtype == np.float64
    # a stack times one matrix
    a = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(K.matmul_numpy(a, w.T.astype(np.float64)), a @ w.T, rtol=1e-12)


@pytest.mark.parametrize("rows", [3, 64, 65])
def test_linear_forward_few_rows_large_weight(rows):
    """Few rows times a large weight run as the transposed product (W X^T)^T (kernels/linear.py): same values,
    a C-contiguous result, the bias added; 65 rows take the plain product."""
    import tinyconv_kernels.linear as K
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 1024)).astype(np.float32)
    w = rng.standard_normal((K.TRANSPOSED_MIN_WEIGHTS // 1024, 1024)).astype(np.float32)
    b = rng.standard_normal(w.shape[0]).astype(np.float32)
    y = K.linear_forward_cpu(x, w, b)
    assert y.flags.c_contiguous and y.shape == (rows, w.shape[0]) and y.dtype == np.float32
    np.testing.assert_allclose(y, x.astype(np.float64) @ w.T.astype(np.float64) + b, rtol=1e-4, atol=1e-3)


def test_linear_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"last dimension 7 .*got shape \(2, 6\)"):
        F.linear(tc.randn(2, 6), tc.randn(5, 7))
    with pytest.raises(ValueError, match=r"bias of shape \(5,\)"):
        F.linear(tc.randn(2, 7), tc.randn(5, 7), tc.randn(4))


@given(n=st.integers(1, 2), g=st.integers(1, 3), cpg=st.integers(1, 3), hw=st.integers(1, 2),
       seed=st.integers(0, 2**16))
def test_channel_shuffle(n, g, cpg, hw, seed):
    x = np.random.default_rng(seed).standard_normal((n, g * cpg, hw, hw))
    expected = np.empty_like(x)
    for c in range(g * cpg):  # output channel c comes from group c % g, position c // g
        expected[:, c] = x[:, (c % g) * cpg + c // g]
    t = tc.tensor(x, requires_grad=True)
    np.testing.assert_array_equal(F.channel_shuffle(t, g).numpy(), expected)
    assert tc.gradcheck(lambda a: F.channel_shuffle(a, g), [t])


def test_channel_shuffle_matches_torch_and_errors(torch):
    x = np.arange(2 * 6 * 2 * 2, dtype=np.float32).reshape(2, 6, 2, 2)
    np.testing.assert_array_equal(F.channel_shuffle(tc.tensor(x), 3).numpy(),
                                  torch.nn.functional.channel_shuffle(torch.tensor(x), 3).numpy())
    with pytest.raises(ValueError, match="divisible by groups=4"):
        F.channel_shuffle(tc.tensor(x), 4)


def test_residual_concat_and_se_gradients():
    """The CNN building blocks made of basic ops: ``x + f(x)``, channel concat, (N,C,1,1) * (N,C,H,W)."""
    rng = np.random.default_rng(0)
    x = tc.tensor(rng.standard_normal((2, 3, 2, 2)), dtype=np.float64, requires_grad=True)
    s = tc.tensor(rng.standard_normal((2, 3, 1, 1)), dtype=np.float64, requires_grad=True)
    assert tc.gradcheck(lambda a: a + F.relu(a) * 2, [x])
    assert tc.gradcheck(lambda a, b: tc.cat([a, F.sigmoid(a), b * a], dim=1), [x, s])
    assert tc.gradcheck(lambda a, b: a * F.sigmoid(b), [x, s])
    # the SE gate's gradient is the product summed over each channel's H x W positions
    (x * s).sum().backward()
    np.testing.assert_allclose(s.grad.numpy(), x.numpy().sum(axis=(2, 3), keepdims=True))
    np.testing.assert_allclose(x.grad.numpy(), np.broadcast_to(s.numpy(), x.shape))
