"""Pooling ops: naive loops, float64 gradcheck over drawn configurations, both kernel paths, PyTorch."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyconv as tc
import tinyconv.functional as F

# `kernels` and `torch` are function-scoped fixtures, but hold no per-example state: reuse across examples is fine
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                             HealthCheck.data_too_large])


# -- naive references --------------------------------------------------------------------------------------
def window_starts(size, K, S, P, D, ceil_mode):
    """Window starts (in unpadded coordinates), enumerated: a window is kept while it fits in the padded input;
    with ceil_mode also one that overhangs, if the previous one did not reach the end and it starts inside
    the input or the left padding."""
    span, padded, starts = D * (K - 1) + 1, size + 2 * P, []
    for o in range(size + 2 * P + 1):
        fits = o * S + span <= padded
        overhangs = ceil_mode and (o - 1) * S + span < padded and o * S - P < size
        if not (fits or overhangs):
            break
        starts.append(o * S - P)
    return starts


def naive_max_pool2d(x, k, s, p, d, ceil_mode):
    N, C, H, W = x.shape
    rows = window_starts(H, k[0], s[0], p[0], d[0], ceil_mode)
    cols = window_starts(W, k[1], s[1], p[1], d[1], ceil_mode)
    y = np.zeros((N, C, len(rows), len(cols)), x.dtype)
    idx = np.zeros(y.shape, np.int64)
    for n, c, i, j in np.ndindex(*y.shape):
        taps = [(h, w) for h in range(rows[i], rows[i] + d[0] * k[0], d[0]) if 0 <= h < H
                for w in range(cols[j], cols[j] + d[1] * k[1], d[1]) if 0 <= w < W]
        h, w = max(taps, key=lambda t: x[n, c, t[0], t[1]])         # first maximum on ties, like PyTorch
        y[n, c, i, j], idx[n, c, i, j] = x[n, c, h, w], h * W + w
    return y, idx


def naive_avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    N, C, H, W = x.shape
    rows, cols = window_starts(H, k[0], s[0], p[0], 1, ceil_mode), window_starts(W, k[1], s[1], p[1], 1, ceil_mode)
    y = np.zeros((N, C, len(rows), len(cols)), x.dtype)
    for n, c, i, j in np.ndindex(*y.shape):
        hs = [h for h in range(rows[i], rows[i] + k[0]) if h < H + p[0]]     # the window within the padded input
        ws = [w for w in range(cols[j], cols[j] + k[1]) if w < W + p[1]]
        real = [(h, w) for h in hs for w in ws if 0 <= h < H and 0 <= w < W]
        divisor = divisor_override or (len(hs) * len(ws) if count_include_pad else len(real))
        y[n, c, i, j] = sum(x[n, c, h, w] for h, w in real) / divisor
    return y


def naive_adaptive(x, out, reduce):
    N, C, H, W = x.shape
    y = np.zeros((N, C) + out, x.dtype)
    for i, j in np.ndindex(*out):
        h0, h1 = int(np.floor(i * H / out[0])), int(np.ceil((i + 1) * H / out[0]))
        w0, w1 = int(np.floor(j * W / out[1])), int(np.ceil((j + 1) * W / out[1]))
        y[:, :, i, j] = reduce(x[:, :, h0:h1, w0:w1], axis=(2, 3))
    return y


def distinct(shape, rng):
    """float64 values all different by far more than gradcheck's eps, so max pooling has no ties."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) / 8.0 - 2.0


# -- configurations ----------------------------------------------------------------------------------------
@st.composite
def pool_configs(draw, dilation=True, max_side=9):
    """Kernel 1-7 (rectangular), stride 1-3, padding up to half the kernel (<= 3), dilation 1-2, ceil_mode,
    and an input just large enough for at least one window (keeps gradcheck cheap)."""
    k = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, min(3, k[0] // 2))), draw(st.integers(0, min(3, k[1] // 2))))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    hw = tuple(max(1, d[i] * (k[i] - 1) + 1 - 2 * p[i]) + draw(st.integers(0, 3)) for i in range(2))
    if max(hw) > max_side:
        d = (1, 1) if dilation else d
        hw = tuple(max(1, k[i] - 2 * p[i]) + draw(st.integers(0, 2)) for i in range(2))
    return dict(shape=(1, 2) + hw, k=k, s=s, p=p, d=d, ceil_mode=draw(st.booleans()))


@fixture_ok
@given(cfg=pool_configs(), seed=st.integers(0, 2**16))
def test_max_pool2d_matches_naive_loop_and_gradcheck(kernels, cfg, seed):
    x = tc.tensor(distinct(cfg["shape"], np.random.default_rng(seed)), requires_grad=True)
    args = dict(kernel_size=cfg["k"], stride=cfg["s"], padding=cfg["p"], dilation=cfg["d"], ceil_mode=cfg["ceil_mode"])
    y, idx = F.max_pool2d(x, **args, return_indices=True)
    y_ref, idx_ref = naive_max_pool2d(x.numpy(), cfg["k"], cfg["s"], cfg["p"], cfg["d"], cfg["ceil_mode"])
    np.testing.assert_array_equal(y.numpy(), y_ref)
    np.testing.assert_array_equal(idx.numpy(), idx_ref)
    assert not idx.requires_grad and idx.dtype == np.int64
    assert tc.gradcheck(lambda x: F.max_pool2d(x, **args), [x])


@fixture_ok
@given(cfg=pool_configs(), seed=st.integers(0, 2**16))
def test_max_pool2d_without_a_gradient_to_route_computes_the_values_alone(kernels, monkeypatch, cfg, seed):
    import tinyconv.functions.pooling as pooling
    used = []
    monkeypatch.setattr(pooling, "get_kernel", lambda name, x: used.append(name) or tc.backend.get_kernel(name, x))
    x = tc.tensor(distinct(cfg["shape"], np.random.default_rng(seed)), requires_grad=True)
    args = dict(kernel_size=cfg["k"], stride=cfg["s"], padding=cfg["p"], dilation=cfg["d"], ceil_mode=cfg["ceil_mode"])
    y = F.max_pool2d(x, **args)
    with tc.no_grad():
        y_no_grad = F.max_pool2d(x, **args)
    y_detached = F.max_pool2d(x.detach(), **args)
    assert used == ["max_pool2d_forward", "max_pool2d_values", "max_pool2d_values"]
    np.testing.assert_array_equal(y_no_grad.numpy(), y.numpy())
    np.testing.assert_array_equal(y_detached.numpy(), y.numpy())
    assert y.requires_grad and not y_no_grad.requires_grad and not y_detached.requires_grad


@fixture_ok
@given(cfg=pool_configs(dilation=False), count_include_pad=st.booleans(),
       divisor_override=st.sampled_from([None, None, 3]), seed=st.integers(0, 2**16))
def test_avg_pool2d_matches_naive_loop_and_gradcheck(kernels, cfg, count_include_pad, divisor_override, seed):
    x = tc.tensor(np.random.default_rng(seed).standard_normal(cfg["shape"]), requires_grad=True)
    args = dict(kernel_size=cfg["k"], stride=cfg["s"], padding=cfg["p"], ceil_mode=cfg["ceil_mode"],
                count_include_pad=count_include_pad, divisor_override=divisor_override)
    y_ref = naive_avg_pool2d(x.numpy(), cfg["k"], cfg["s"], cfg["p"], cfg["ceil_mode"], count_include_pad,
                             divisor_override)
    np.testing.assert_allclose(F.avg_pool2d(x, **args).numpy(), y_ref, rtol=1e-12, atol=1e-12)
    assert tc.gradcheck(lambda x: F.avg_pool2d(x, **args), [x])


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
def test_pooling_keeps_float32_and_3d_input(kernels, op):
    x = tc.randn(3, 7, 6)
    y = op(x, 3, stride=2, padding=1, ceil_mode=True)
    y4 = op(x.reshape(1, 3, 7, 6), 3, stride=2, padding=1, ceil_mode=True)
    assert y.dtype == np.float32 and y.shape == (3, 4, 4)
    np.testing.assert_array_equal(y.numpy(), y4.numpy()[0])


def test_stride_defaults_to_kernel_size():
    x = tc.randn(1, 1, 6, 6)
    np.testing.assert_array_equal(F.max_pool2d(x, 2).numpy(), F.max_pool2d(x, 2, stride=2).numpy())
    np.testing.assert_array_equal(F.max_pool2d(x, 2, stride=[]).numpy(), F.max_pool2d(x, 2, stride=2).numpy())
    assert F.avg_pool2d(x, (3, 2)).shape == (1, 1, 2, 3)


@given(H=st.integers(1, 9), W=st.integers(1, 9), OH=st.integers(1, 9), OW=st.integers(1, 9),
       seed=st.integers(0, 2**16))
def test_adaptive_pooling_matches_naive_loop_and_gradcheck(H, W, OH, OW, seed):
    x = tc.tensor(distinct((1, 2, H, W), np.random.default_rng(seed)), requires_grad=True)
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, (OH, OW)).numpy(),
                               naive_adaptive(x.numpy(), (OH, OW), np.mean), rtol=1e-12, atol=1e-14)
    y, idx = F.adaptive_max_pool2d(x, (OH, OW), return_indices=True)
    np.testing.assert_array_equal(y.numpy(), naive_adaptive(x.numpy(), (OH, OW), np.max))
    np.testing.assert_array_equal(x.numpy().reshape(1, 2, -1)[0, 0][idx.numpy()[0, 0]], y.numpy()[0, 0])
    assert tc.gradcheck(lambda x: F.adaptive_avg_pool2d(x, (OH, OW)), [x])
    assert tc.gradcheck(lambda x: F.adaptive_max_pool2d(x, (OH, OW)), [x])


def test_adaptive_output_size_forms_and_global_pool(kernels):
    x = tc.tensor(distinct((2, 3, 6, 4), np.random.default_rng(0)), requires_grad=True)
    assert F.adaptive_avg_pool2d(x, 2).shape == (2, 3, 2, 2)
    assert F.adaptive_avg_pool2d(x, (None, 3)).shape == (2, 3, 6, 3)
    assert F.adaptive_max_pool2d(x, (3, None)).shape == (2, 3, 3, 4)
    assert F.adaptive_max_pool2d(x[0], 2).shape == (3, 2, 2)
    g = F.global_avg_pool2d(x)
    np.testing.assert_allclose(g.numpy(), x.numpy().mean(axis=(2, 3), keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, 1).numpy(), g.numpy(), rtol=1e-12)
    assert tc.gradcheck(F.global_avg_pool2d, [x])
    # divisible sizes take the max-pool kernel path: same result as the general loop
    np.testing.assert_array_equal(F.adaptive_max_pool2d(x, (3, 2)).numpy(), naive_adaptive(x.numpy(), (3, 2), np.max))
    assert tc.gradcheck(lambda x: F.adaptive_max_pool2d(x, (3, 2)), [x])


@pytest.mark.parametrize("call,message", [
    (lambda: F.max_pool2d(tc.randn(4, 4), 2),
     r"max_pool2d: expected input of shape \(N, C, H, W\) or \(C, H, W\), got \(4, 4\)"),
    (lambda: F.max_pool2d(tc.randn(1, 1, 6, 6), 3, padding=2), r"pad should be at most half of kernel size"),
    (lambda: F.avg_pool2d(tc.randn(1, 1, 6, 6), (3, 2), padding=(1, 2)), r"padding=\(1, 2\) for kernel_size=\(3, 2\)"),
    (lambda: F.max_pool2d(tc.randn(1, 3, 4, 4), 5), r"computed output size is \(N, C, 0, 0\)"),
    (lambda: F.max_pool2d(tc.randn(1, 3, 4, 4), 2, stride=0), r"stride should be greater than zero"),
    (lambda: F.avg_pool2d(tc.randn(1, 3, 4, 4), 0), r"kernel_size should be greater than zero"),
    (lambda: F.avg_pool2d(tc.randn(1, 3, 4, 4), 2, padding=-1), r"padding should be non-negative"),
    (lambda: F.adaptive_avg_pool2d(tc.randn(1, 3, 4, 4), (0, 2)), r"output size must be positive, got \(0, 2\)"),
    (lambda: F.adaptive_max_pool2d(tc.randn(3, 4), 2), r"adaptive_max_pool2d: expected input of shape"),
])
def test_errors_name_the_op_and_the_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_integer_input_is_refused():
    with pytest.raises(TypeError, match="floating-point"):
        F.max_pool2d(tc.tensor(np.arange(16).reshape(1, 1, 4, 4)), 2)


# -- PyTorch -----------------------------------------------------------------------------------------------
def against_torch(torch, ours, theirs, x_np, rtol=1e-4):
    """Forward and backward of ``ours(x)`` and ``theirs(x)`` in float32 under a random output gradient."""
    x = tc.tensor(x_np, requires_grad=True)
    xt = torch.tensor(x_np, requires_grad=True)
    y, yt = ours(x), theirs(xt)
    assert y.shape == tuple(yt.shape) and y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=rtol, atol=1e-6)
    gy = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=rtol, atol=1e-6)


@fixture_ok
@given(cfg=pool_configs(max_side=12), count_include_pad=st.booleans(),
       divisor_override=st.sampled_from([None, None, 2]), seed=st.integers(0, 2**16))
def test_pooling_matches_torch(torch, cfg, count_include_pad, divisor_override, seed):
    shape = (2, 3) + cfg["shape"][2:]
    x = (distinct(shape, np.random.default_rng(seed)) / np.prod(shape)).astype(np.float32)
    k, s, p, d, ceil = cfg["k"], cfg["s"], cfg["p"], cfg["d"], cfg["ceil_mode"]
    against_torch(torch, lambda x: F.max_pool2d(x, k, s, p, d, ceil),
                  lambda x: torch.nn.functional.max_pool2d(x, k, s, p, d, ceil), x)
    _, idx = F.max_pool2d(tc.tensor(x), k, s, p, d, ceil, return_indices=True)
    _, idx_t = torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, d, ceil, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), idx_t.numpy())
    against_torch(torch, lambda x: F.avg_pool2d(x, k, s, p, ceil, count_include_pad, divisor_override),
                  lambda x: torch.nn.functional.avg_pool2d(x, k, s, p, ceil, count_include_pad, divisor_override), x)


@fixture_ok
@given(H=st.integers(1, 10), W=st.integers(1, 10), OH=st.integers(1, 8), OW=st.integers(1, 8),
       seed=st.integers(0, 2**16))
def test_adaptive_pooling_matches_torch(torch, H, W, OH, OW, seed):
    x = distinct((2, 3, H, W), np.random.default_rng(seed)).astype(np.float32)
    against_torch(torch, lambda x: F.adaptive_avg_pool2d(x, (OH, OW)),
                  lambda x: torch.nn.functional.adaptive_avg_pool2d(x, (OH, OW)), x)
    against_torch(torch, lambda x: F.adaptive_max_pool2d(x, (OH, OW)),
                  lambda x: torch.nn.functional.adaptive_max_pool2d(x, (OH, OW)), x)
    _, idx = F.adaptive_max_pool2d(tc.tensor(x), (OH, OW), return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), torch.nn.functional.adaptive_max_pool2d(
        torch.tensor(x), (OH, OW), return_indices=True)[1].numpy())


@pytest.mark.parametrize("H,k,s,p,ceil", [(5, 2, 2, 1, True), (5, 3, 3, 1, True), (6, 3, 2, 0, True),
                                          (224, 3, 2, 0, False), (55, 3, 2, 0, True), (112, 3, 2, 1, False)])
def test_output_size_rule_matches_torch(torch, H, k, s, p, ceil):
    x = np.random.default_rng(0).standard_normal((1, 1, H, 3)).astype(np.float32)
    ours = F.max_pool2d(tc.tensor(x), (k, 1), (s, 1), (p, 0), ceil_mode=ceil).shape
    assert ours == tuple(torch.nn.functional.max_pool2d(torch.tensor(x), (k, 1), (s, 1), (p, 0), ceil_mode=ceil).shape)
    assert ours[2] == len(window_starts(H, k, s, p, 1, ceil))
