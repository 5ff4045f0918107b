"""dropout, dropout2d, stochastic depth: mask statistics, scaling, gradients, seeding, evaluation identity."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinyconv as tc
import tinyconv.functional as F


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics_and_scaling(p):
    x = tc.ones(200, 500)
    y = F.dropout(x, p).numpy()
    assert y.dtype == np.float32
    zero = y == 0
    n = y.size
    assert abs(zero.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)  # fraction zeroed, within 5 sigma
    np.testing.assert_allclose(y[~zero], 1 / (1 - p), rtol=1e-6)  # kept values scaled by 1/(1-p)
    assert abs(y.mean() - 1) < 5 * np.sqrt(p / (1 - p) / n)  # the mean is preserved


def test_dropout_gradient_is_the_mask():
    x = tc.randn(6, 7, requires_grad=True)
    y = F.dropout(x, 0.4)
    gy = np.random.default_rng(0).standard_normal((6, 7)).astype(np.float32)
    y.backward(gy)
    mask = y.numpy() / x.numpy()
    np.testing.assert_allclose(x.grad.numpy(), gy * mask, rtol=1e-6)


@given(shape=st.sampled_from([(3, 4), (2, 3, 2, 2)]), seed=st.integers(0, 100))
def test_gradcheck_with_fixed_masks(shape, seed):
    x = tc.tensor(np.random.default_rng(seed).standard_normal(shape), dtype=np.float64, requires_grad=True)

    def seeded(fn):
        def run(a):
            tc.manual_seed(seed)  # the same mask on every evaluation
            return fn(a)
        return run
    assert tc.gradcheck(seeded(lambda a: F.dropout(a, 0.3)), [x])
    assert tc.gradcheck(seeded(lambda a: F.drop_path(a, 0.5)), [x])
    if x.ndim == 4:
        assert tc.gradcheck(seeded(lambda a: F.dropout2d(a, 0.5)), [x])


def test_seeding_is_reproducible():
    x = tc.ones(50, 40)
    tc.manual_seed(123)
    a = F.dropout(x, 0.5).numpy()
    tc.manual_seed(123)
    b = F.dropout(x, 0.5).numpy()
    c = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_dropout2d_zeroes_whole_channels():
    x = tc.ones(64, 32, 3, 3)
    y = F.dropout2d(x, 0.25).numpy()
    per_channel = y.reshape(64, 32, 9)
    assert (per_channel.min(-1) == per_channel.max(-1)).all()  # each map all zero or all kept
    dropped = per_channel[..., 0] == 0
    assert abs(dropped.mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / dropped.size)
    np.testing.assert_allclose(per_channel[~dropped], 1 / 0.75, rtol=1e-6)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_masks_samples(mode):
    x = tc.ones(400, 2, 2, 2)
    y = F.stochastic_depth(x, 0.3, mode).numpy().reshape(400, -1)
    assert (y.min(-1) == y.max(-1)).all()  # each sample all zero or all kept
    if mode == "batch":
        assert len(np.unique(y)) == 1
    else:
        dropped = y[:, 0] == 0
        assert abs(dropped.mean() - 0.3) < 5 * np.sqrt(0.21 / 400)
        np.testing.assert_allclose(y[~dropped], 1 / 0.7, rtol=1e-6)


def test_identity_in_eval_and_edge_probabilities():
    x = tc.randn(4, 3, 2, 2)
    for fn in (F.dropout, F.dropout2d, F.drop_path):
        assert fn(x, 0.5, training=False) is x
        assert fn(x, 0.0) is x
    assert (F.dropout(x, 1.0).numpy() == 0).all()
    assert (F.drop_path(x, 1.0).numpy() == 0).all()
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        F.dropout(x, 1.5)
    with pytest.raises(ValueError, match="mode"):
        F.stochastic_depth(x, 0.1, "col")


def test_scaling_agrees_with_torch(torch):
    """Masks are random on both sides; the kept values and the zero fraction follow the same rule."""
    x = np.random.default_rng(0).uniform(1, 2, (100, 100)).astype(np.float32)
    ours = F.dropout(tc.tensor(x), 0.3).numpy()
    theirs = torch.nn.functional.dropout(torch.tensor(x), 0.3).numpy()
    for y in (ours, theirs):
        kept = y != 0
        np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-6)
    assert abs((ours == 0).mean() - (theirs == 0).mean()) < 0.03
    np.testing.assert_array_equal(F.dropout(tc.tensor(x), 0.3, training=False).numpy(),
                                  torch.nn.functional.dropout(torch.tensor(x), 0.3, training=False).numpy())
