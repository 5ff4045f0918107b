"""The engine's first promises: a small graph back-propagates, gradcheck passes on it."""
import tinyconv as tc


def test_small_graph_gradcheck():
    x = tc.randn(3, 4, dtype=tc.float64, requires_grad=True)
    w = tc.randn(4, 2, dtype=tc.float64, requires_grad=True)
    assert tc.gradcheck(lambda x, w: ((x @ w).exp().sum(axis=1) / 3 - x.max(axis=1)), [x, w])
