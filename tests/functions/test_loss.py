"""Losses: naive per-sample loops, float64 gradcheck, PyTorch forward/backward, stability, error messages."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinyconv as tc
import tinyconv.functional as F

REDUCTIONS = ["none", "mean", "sum"]


def _ce_naive(x, y, w, ignore_index, eps, reduction):
    """Loop over samples (class axis 1, other axes flattened): PyTorch's weighted, smoothed cross-entropy."""
    C = x.shape[1]
    rows = np.moveaxis(x, 1, -1).reshape(-1, C)
    losses, denom = [], 0.0
    for z, t in zip(rows, y.reshape(-1)):
        if t == ignore_index:
            losses.append(0.0)
            continue
        m = max(z)
        logp = [v - m - math.log(sum(math.exp(u - m) for u in z)) for v in z]
        wt = 1.0 if w is None else w[t]
        smooth = sum(-(1.0 if w is None else w[c]) * logp[c] for c in range(C)) / C
        losses.append((1 - eps) * -wt * logp[t] + eps * smooth)
        denom += wt
    losses = np.array(losses).reshape(y.shape)
    return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / denom}[reduction]


def _draw_case(seed, spatial, weighted, ignore):
    rng = np.random.default_rng(seed)
    n, c = 3, 4
    x = rng.standard_normal((n, c) + spatial) * 2
    y = rng.integers(0, c, (n,) + spatial)
    if ignore:
        y.reshape(-1)[0] = -100
    w = rng.uniform(0.5, 2.0, c) if weighted else None
    return x, y, w


@given(seed=st.integers(0, 2**16), spatial=st.sampled_from([(), (2,), (2, 1)]), weighted=st.booleans(),
       ignore=st.booleans(), eps=st.sampled_from([0.0, 0.1]), reduction=st.sampled_from(REDUCTIONS))
def test_cross_entropy_naive_and_gradcheck(seed, spatial, weighted, ignore, eps, reduction):
    x, y, w = _draw_case(seed, spatial, weighted, ignore)
    wt = None if w is None else tc.tensor(w, dtype=np.float64)
    xt = tc.tensor(x, dtype=np.float64, requires_grad=True)
    out = F.cross_entropy(xt, tc.tensor(y), wt, reduction=reduction, label_smoothing=eps)
    np.testing.assert_allclose(out.numpy(), _ce_naive(x, y, w, -100, eps, reduction), rtol=1e-10, atol=1e-12)
    assert tc.gradcheck(lambda a: F.cross_entropy(a, tc.tensor(y), wt, reduction=reduction, label_smoothing=eps),
                        [xt])


def _torch_pair(torch, ours, theirs, arrays, grad_of=(0,), rtol=1e-4, atol=1e-6):
    """Run a tinyconv and a PyTorch function on the same float32 arrays; compare outputs and gradients."""
    a = [tc.tensor(v, requires_grad=i in grad_of) if v.dtype.kind == "f" else tc.tensor(v)
         for i, v in enumerate(arrays)]
    b = [torch.tensor(v, requires_grad=i in grad_of) if v.dtype.kind == "f" else torch.tensor(v)
         for i, v in enumerate(arrays)]
    ya, yb = ours(*a), theirs(*b)
    gy = np.random.default_rng(5).standard_normal(ya.shape).astype(np.float32)
    ya.backward(gy)
    yb.backward(torch.tensor(gy))
    np.testing.assert_allclose(ya.numpy(), yb.detach().numpy(), rtol=rtol, atol=atol)
    for i in grad_of:
        np.testing.assert_allclose(a[i].grad.numpy(), b[i].grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("spatial,weighted,ignore,eps,reduction",
                         list(itertools.product([(), (3, 2)], [False, True], [False, True], [0.0, 0.2], REDUCTIONS)))
def test_cross_entropy_matches_torch(torch, spatial, weighted, ignore, eps, reduction):
    x, y, w = _draw_case(11, spatial, weighted, ignore)
    arrays = [x.astype(np.float32), y] + ([w.astype(np.float32)] if weighted else [])
    _torch_pair(torch, lambda *a: F.cross_entropy(*a, reduction=reduction, label_smoothing=eps),
                lambda *a: torch.nn.functional.cross_entropy(*a, reduction=reduction, label_smoothing=eps), arrays)


def test_cross_entropy_probability_targets_and_unbatched(torch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    p = rng.dirichlet(np.ones(5), 4).astype(np.float32)
    w = rng.uniform(0.5, 2, 5).astype(np.float32)
    for reduction in REDUCTIONS:
        _torch_pair(torch, lambda a, b, c: F.cross_entropy(a, b, c, reduction=reduction, label_smoothing=0.1),
                    lambda a, b, c: torch.nn.functional.cross_entropy(a, b, c, reduction=reduction,
                                                                      label_smoothing=0.1), [x, p, w])
    _torch_pair(torch, F.cross_entropy, torch.nn.functional.cross_entropy, [x[0], np.array(3)])


def test_cross_entropy_is_stable_for_huge_logits():
    x = tc.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], requires_grad=True)
    loss = F.cross_entropy(x, tc.tensor([1, 2]))
    loss.backward()
    assert loss.item() == pytest.approx(1e4)  # (2e4 + 0) / 2
    np.testing.assert_allclose(x.grad.numpy(), [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)


def test_all_ignored_mean_is_nan_like_torch():
    loss = F.cross_entropy(tc.randn(2, 3), tc.tensor([-100, -100]))
    assert np.isnan(loss.item())


def test_class_target_errors():
    x = tc.randn(4, 10)
    with pytest.raises(IndexError, match="target index 10 is out of range for 10 classes"):
        F.cross_entropy(x, tc.tensor([1, 2, 10, 3]))
    with pytest.raises(IndexError, match="target index -1 is out of range for 10 classes"):
        F.nll_loss(x, tc.tensor([1, 2, -1, 3]))
    with pytest.raises(TypeError, match="integer dtype.*float32"):
        F.nll_loss(x, tc.tensor([1.0, 2.0, 0.0, 3.0]))
    with pytest.raises(ValueError, match=r"probability targets .* shape \(4, 10\), got \(4,\)"):
        F.cross_entropy(x, tc.tensor([1.0, 2.0, 0.0, 3.0]))
    with pytest.raises(ValueError, match=r"target of shape \(4,\) for input of shape \(4, 10\), got \(4, 1\)"):
        F.cross_entropy(x, tc.tensor([[1], [2], [0], [3]]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, tc.tensor([1, 2, 0, 3]), reduction="avg")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss(torch, reduction):
    x, y, w = _draw_case(3, (2,), True, True)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    ours = F.nll_loss(tc.tensor(logp, dtype=np.float64), tc.tensor(y), tc.tensor(w, dtype=np.float64),
                      reduction=reduction)
    np.testing.assert_allclose(ours.numpy(), _ce_naive(x, y, w, -100, 0.0, reduction), rtol=1e-10)
    xt = tc.tensor(logp, dtype=np.float64, requires_grad=True)
    assert tc.gradcheck(lambda a: F.nll_loss(a, tc.tensor(y), tc.tensor(w), reduction=reduction), [xt])
    _torch_pair(torch, lambda *a: F.nll_loss(*a, reduction=reduction),
                lambda *a: torch.nn.functional.nll_loss(*a, reduction=reduction),
                [logp.astype(np.float32), y, w.astype(np.float32)])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss(torch, reduction):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    sq = (x - t) ** 2
    expected = {"none": sq, "mean": sq.mean(), "sum": sq.sum()}[reduction]
    np.testing.assert_allclose(F.mse_loss(tc.tensor(x), tc.tensor(t), reduction).numpy(), expected, rtol=1e-6)
    a, b = (tc.tensor(v, dtype=np.float64, requires_grad=True) for v in (x, t))
    assert tc.gradcheck(lambda p, q: F.mse_loss(p, q, reduction), [a, b])
    _torch_pair(torch, lambda p, q: F.mse_loss(p, q, reduction),
                lambda p, q: torch.nn.functional.mse_loss(p, q, reduction=reduction),
                [x.astype(np.float32), t.astype(np.float32)], grad_of=(0, 1))


def _hinge_naive(x, y, p, margin, w):
    losses = []
    for row, t in zip(x, y):
        wt = 1.0 if w is None else w[t]
        losses.append(sum(wt * max(0.0, margin - row[t] + row[c]) ** p for c in range(len(row)) if c != t) / len(row))
    return np.array(losses)


@given(seed=st.integers(0, 2**16), p=st.sampled_from([1, 2]), weighted=st.booleans(),
       reduction=st.sampled_from(REDUCTIONS))
def test_multi_margin_naive_and_gradcheck(seed, p, weighted, reduction):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((3, 4)), rng.integers(0, 4, 3)
    w = rng.uniform(0.5, 2, 4) if weighted else None
    wt = None if w is None else tc.tensor(w, dtype=np.float64)
    losses = _hinge_naive(x, y, p, 0.7, w)
    expected = {"none": losses, "mean": losses.mean(), "sum": losses.sum()}[reduction]
    xt = tc.tensor(x, dtype=np.float64, requires_grad=True)
    fn = lambda a: F.multi_margin_loss(a, tc.tensor(y), p, 0.7, wt, reduction)  # noqa: E731
    np.testing.assert_allclose(fn(xt).numpy(), expected, rtol=1e-10)
    margins = 0.7 - x[np.arange(3), y][:, None] + x
    if np.abs(margins).min() > 1e-3:  # away from the hinge
        assert tc.gradcheck(fn, [xt])


@pytest.mark.parametrize("p,reduction", [(1, "mean"), (2, "none"), (1, "sum")])
def test_multi_margin_matches_torch(torch, p, reduction):
    rng = np.random.default_rng(1)
    x, y, w = rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 4, 5), rng.uniform(0.5, 2, 4)
    _torch_pair(torch, lambda a, b, c: F.multi_margin_loss(a, b, p, 0.5, c, reduction),
                lambda a, b, c: torch.nn.functional.multi_margin_loss(a, b, p, 0.5, c, reduction=reduction),
                [x, y, w.astype(np.float32)])


def _bce_naive(x, t, w, pw):
    s = 1 / (1 + np.exp(-x))
    return -w * (pw * t * np.log(s) + (1 - t) * np.log(1 - s))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits(torch, reduction):
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((3, 4)) * 3, rng.uniform(0, 1, (3, 4))
    w, pw = rng.uniform(0.5, 2, (1, 4)), rng.uniform(0.5, 3, 4)
    losses = _bce_naive(x, t, w, pw)
    expected = {"none": losses, "mean": losses.mean(), "sum": losses.sum()}[reduction]
    args = [tc.tensor(v, dtype=np.float64, requires_grad=i < 2) for i, v in enumerate((x, t, w, pw))]
    fn = lambda a, b, c, d: F.binary_cross_entropy_with_logits(a, b, c, reduction, d)  # noqa: E731
    np.testing.assert_allclose(fn(*args).numpy(), expected, rtol=1e-10)
    assert tc.gradcheck(fn, args)
    assert tc.gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), args[:2])
    _torch_pair(torch, fn, lambda a, b, c, d: torch.nn.functional.binary_cross_entropy_with_logits(
        a, b, c, reduction=reduction, pos_weight=d), [v.astype(np.float32) for v in (x, t, w, pw)], grad_of=(0, 1))


def test_bce_with_logits_is_stable():
    x = tc.tensor([-1e4, 1e4, 50.0], requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, tc.tensor([1.0, 0.0, 1.0]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [1e4, 1e4, 0.0], atol=1e-6)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-1.0, 1.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match=r"target size \(2,\) must be the same as input size \(3,\)"):
        F.binary_cross_entropy_with_logits(x, tc.tensor([1.0, 0.0]))


# -- no NaN from 0 * -inf: classes the target does not weigh contribute nothing ------------------------------
def exact_cross_entropy(row, target, eps=0.0):
    """The loss of one row in exact arithmetic (Python floats; -inf logits allowed)."""
    row = [float(v) for v in row]
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    log_p = [v - lse for v in row]
    C = len(row)
    q = [(1 - eps) * (c == target) + eps / C for c in range(C)]
    return -sum(qc * lp for qc, lp in zip(q, log_p) if qc != 0)


@pytest.mark.parametrize("logits, target, expected", [
    ([[1.0, -np.inf, 0.0]], 0, 0.31326168751822286),
    ([[3e38, -3e38]], 0, 0.0),
    ([[-3e38, 3e38, 0.0]], 1, 0.0),
    ([[np.float32(3.4e38), np.float32(-3.4e38), 0.0]], 0, 0.0),
])
def test_cross_entropy_has_no_nan_from_zero_times_minus_inf(logits, target, expected):
    x = tc.tensor(np.array(logits, dtype=np.float32), requires_grad=True)
    y = tc.tensor(np.array([target]))
    loss = F.cross_entropy(x, y)
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(exact_cross_entropy(logits[0], target), abs=1e-6)
    loss.backward()
    assert np.isfinite(x.grad.numpy()).all()
    for reduction in ("sum", "none"):
        assert np.isfinite(F.cross_entropy(x, y, reduction=reduction).numpy()).all()


def test_nll_loss_ignores_minus_inf_log_probabilities_of_other_classes():
    log_p = tc.tensor(np.array([[-0.5, -np.inf, -1.0], [-np.inf, -0.1, -np.inf]], np.float32), requires_grad=True)
    loss = F.nll_loss(log_p, tc.tensor(np.array([0, 1])))
    assert loss.item() == pytest.approx(0.3)
    loss.backward()
    assert np.array_equal(log_p.grad.numpy(), [[-0.5, 0, 0], [0, -0.5, 0]])


def test_label_smoothing_with_minus_inf_logits_is_inf_not_nan():
    # every class carries eps / C of the target: a -inf logit makes the exact loss +inf
    x = tc.tensor(np.array([[1.0, -np.inf, 0.0]], np.float32))
    assert F.cross_entropy(x, tc.tensor(np.array([0])), label_smoothing=0.1).item() == np.inf
    big = tc.tensor(np.array([[3e38, -3e38]], np.float32))
    got = F.cross_entropy(big, tc.tensor(np.array([0])), label_smoothing=0.1).item()
    # the exact loss, 0.05 * 6e38 = 3e38, is finite, but log p = -6e38 is not a float32 (PyTorch: inf too)
    assert got == np.inf


@pytest.mark.torch
def test_extreme_logits_match_torch(torch):
    cases = [([[1.0, -np.inf, 0.0]], [0]), ([[3e38, -3e38]], [0]), ([[-3e38, 3e38, 0.0], [0.0, 1.0, 2.0]], [1, 2]),
             ([[0.0, -np.inf], [-np.inf, 5.0]], [0, 1])]
    for logits, target in cases:
        for eps in (0.0, 0.2):
            x = np.array(logits, np.float32)
            got = F.cross_entropy(tc.tensor(x), tc.tensor(np.array(target)), label_smoothing=eps).item()
            want = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(target),
                                                     label_smoothing=eps).item()
            assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, rel=1e-6, abs=1e-6), \
                (logits, target, eps, got, want)
