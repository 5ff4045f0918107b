"""Batch normalisation over ``(N, C, L)`` arrays (``L = H*W``, or 1 for ``(N, C)`` inputs): each channel c is
normalised over its ``m = N*L`` values ``x[:, c, :]``, N strided planes of L contiguous values.

    mu_c = (1/m) sum x[:, c, :],   var_c = (1/m) sum (x[:, c, :] - mu_c)^2   (biased, two passes),
    invstd_c = 1 / sqrt(var_c + eps),   xhat = (x - mu_c) invstd_c,   y = gamma_c xhat + beta_c.

Backward (the compact form derived in ``tinyconv/functions/normalization.py``), with ``k_c = gamma_c invstd_c``
(``invstd_c`` without gamma) and ``dy`` the output gradient:

    dx = k dy - (k/m) sum dy - xhat (k/m) sum(dy xhat)      (training: the statistics depend on x)
    dx = k dy                                                (evaluation: running statistics are constants)
    dgamma = sum(dy xhat),   dbeta = sum dy                  (over N and L)

xhat is recomputed from x in the backward pass instead of being stored: x is kept alive by the autograd graph
anyway, so storing xhat would cost one more activation-sized array per layer.

Kernels (same signature for ``_numpy`` and ``_cpu``; per-channel arrays are ``(C,)`` in x's dtype;
``gamma``/``beta`` may be None, meaning 1 and 0):

    batch_norm_forward(x, gamma, beta, eps)           -> (y, mean, var, invstd)   training, batch statistics
    batch_norm_eval(x, mean, k, beta, activation=None, out=None)
                                                      -> y = (x - mean) k + beta  evaluation, k = gamma invstd;
                                                      then relu or relu6 in the same pass (``activation``:
                                                      None, 'relu', 'relu6'; the bits of the relu kernels);
                                                      written into ``out`` when given (x itself: in place)
    batch_norm_backward(gy, x, mean, invstd, k, training) -> (gx, sum_gy, sum_gy_xhat)

The NumPy reference makes about six whole-array passes each way.  The Numba kernels fuse them: each channel
(or block of channels, for planes under 32 values) has its N*L values read once from memory and re-read from
cache by the next pass, so the forward pass reads x and writes y once, the backward pass reads x and dy and
writes dx once; iterations over channels run in parallel for large arrays (``parallel_min_size`` below).
Their sums accumulate in float64 (then rounded to x's dtype), so float32 statistics stay accurate over large
channels; the variance is the two-pass one, exact even when |mean| >> std.  There is no CUDA kernel: on CuPy
arrays the NumPy reference runs, handed ``xp=cupy`` (the references take the array module as ``xp``; see
``TAKES_XP`` in ``__init__.py``).
"""
import numpy as np
from numba import njit, prange

from .activation import relu6_value, relu_value


def _per_channel(a, C, dtype, default):
    """``a`` as a contiguous ``(C,)`` array of ``dtype``, or ``default`` repeated when ``a`` is None."""
    return np.full(C, default, dtype) if a is None else np.ascontiguousarray(a, dtype=dtype).reshape(C)


# -- NumPy reference ----------------------------------------------------------------------------------
def _sums(xp, a, b=None):
    """Per-channel ``sum a`` (or ``sum a*b`` without the full-size product) of ``(N, C, L)`` arrays."""
    return xp.einsum("ncl->c", a) if b is None else xp.einsum("ncl,ncl->c", a, b)


def batch_norm_forward_numpy(x, gamma, beta, eps, *, xp=np):
    """Reference training forward: whole-array passes in x's dtype."""
    m = x.dtype.type(x.shape[0] * x.shape[2])
    mean = _sums(xp, x) / m
    xhat = x - mean[:, None]
    var = _sums(xp, xhat, xhat) / m  # two passes: exact even when |mean| >> std
    invstd = 1 / xp.sqrt(var + x.dtype.type(eps))
    xhat *= invstd[:, None]
    y = xhat if gamma is None else xhat * gamma.astype(x.dtype, copy=False)[:, None]
    if beta is not None:
        y += beta.astype(x.dtype, copy=False)[:, None]
    return y, mean, var, invstd


ACTIVATIONS = {None: 0, "relu": 1, "relu6": 2}  # what batch_norm_eval may apply on the way out


def batch_norm_eval_numpy(x, mean, k, beta, activation=None, out=None, *, xp=np):
    """Reference affine map ``(x - mean) k + beta``, then the activation (NumPy's maximum or clip, as the
    relu and relu6 references)."""
    _check_eval(x, activation, out)
    y = x - mean[:, None]
    y *= k[:, None]
    if beta is not None:
        y += beta.astype(x.dtype, copy=False)[:, None]
    if activation == "relu":
        xp.maximum(y, y.dtype.type(0), out=y)
    elif activation == "relu6":
        xp.clip(y, 0, 6, out=y)
    if out is not None:
        out[...] = y
        return out
    return y


def _check_eval(x, activation, out):
    if activation not in ACTIVATIONS:
        raise ValueError(f"batch_norm_eval: activation should be one of {list(ACTIVATIONS)}, got {activation!r}")
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype or not out.flags.c_contiguous):
        raise ValueError(f"batch_norm_eval: out should be a C-contiguous {x.dtype} array of shape {x.shape}, got "
                         f"{out.dtype} {out.shape}" + ("" if out.flags.c_contiguous else " (not contiguous)"))


def batch_norm_backward_numpy(gy, x, mean, invstd, k, training, *, xp=np):
    """Reference backward: xhat recomputed, then the sums and the compact form as whole-array passes."""
    xhat = x - mean[:, None]
    xhat *= invstd[:, None]
    sum_gy, sum_gy_xhat = _sums(xp, gy), _sums(xp, gy, xhat)
    gx = gy * k[:, None]
    if training:
        km = k / gy.dtype.type(gy.shape[0] * gy.shape[2])
        gx -= xhat * (km * sum_gy_xhat)[:, None]
        gx -= (km * sum_gy)[:, None]
    return gx, sum_gy, sum_gy_xhat


# -- Numba CPU: parallel over channels -----------------------------------------------------------------
# Two loop orders.  Large planes (L >= _BLOCKS_BELOW_L): one channel per iteration, inner loops over its N
# rows of L values, sums in float64 scalars.  Small planes (the last stages of a network, 4x4 or 2x2, and
# (N, C) inputs), where those inner loops would be a few values long: x is viewed as (N, C*L) rows and a
# block of channels owns one contiguous segment of every row; the inner loops run over the whole segment with
# per-position float64 partial sums and per-position copies of the channel coefficients ("spread").
# fastmath "reassoc" lets LLVM vectorise the float64 sums (several partial sums, as a pairwise sum would);
# no other fast-math flag, so NaN and infinity propagate as in NumPy.
_FAST = {"reassoc"}
_BLOCKS_BELOW_L = 32
_BLOCK_VALUES = 512  # values of one row a block of channels aims for; at least 8 blocks to share out


@njit(parallel=True, cache=True, fastmath=_FAST)
def _forward_channels(x, gamma, beta, eps, y, mean, var, invstd):
    N, C, L = x.shape
    t = x.dtype.type
    m = N * L
    for c in prange(C):
        s = 0.0
        for n in range(N):
            for j in range(L):
                s += x[n, c, j]
        mu = s / m
        s2 = 0.0
        for n in range(N):
            for j in range(L):
                d = x[n, c, j] - mu
                s2 += d * d
        mean[c], var[c], invstd[c] = t(mu), t(s2 / m), t(1.0 / np.sqrt(s2 / m + eps))
        # y = (x - mu) (gamma invstd) + beta in x's dtype, with mu = hi + lo split in two of that dtype: x - hi
        # is exact near the mean, so y keeps its digits when |mean| >> std
        hi = t(mu)
        lo, k, b = t(mu - hi), gamma[c] * invstd[c], beta[c]
        for n in range(N):
            for j in range(L):
                y[n, c, j] = ((x[n, c, j] - hi) - lo) * k + b


@njit(cache=True, inline="always")
def _activate(v, act):
    """v, relu(v) or relu6(v) for act 0, 1, 2: the relu kernels' own rule (kernels/activation.py), so their bits."""
    if act == 1:
        return relu_value(v)
    if act == 2:
        return relu6_value(v)
    return v


@njit(parallel=True, cache=True, fastmath=_FAST)
def _eval_channels(x, mean, k, beta, y, act):
    N, C, L = x.shape
    for c in prange(C):
        mu, kc, b = mean[c], k[c], beta[c]
        for n in range(N):
            for j in range(L):
                y[n, c, j] = _activate((x[n, c, j] - mu) * kc + b, act)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _backward_channels(gy, x, mean, invstd, k, training, gx, sum_gy, sum_gy_xhat):
    N, C, L = x.shape
    t = x.dtype.type
    m = N * L
    for c in prange(C):
        mu, inv = mean[c], invstd[c]
        s = 0.0
        sx = 0.0
        for n in range(N):
            for j in range(L):
                g = gy[n, c, j]
                s += g
                sx += g * ((x[n, c, j] - mu) * inv)
        sum_gy[c], sum_gy_xhat[c] = t(s), t(sx)
        # dx = k dy + a + b (x - mu), with a = -(k/m) sum dy, b = -(k/m) sum(dy xhat) invstd
        kc = k[c]
        a = t(-k[c] * s / m) if training else t(0.0)
        b = t(-k[c] * sx / m) * inv if training else t(0.0)
        for n in range(N):
            for j in range(L):
                gx[n, c, j] = kc * gy[n, c, j] + a + b * (x[n, c, j] - mu)


@njit(inline="always")
def _channel_sum(acc, cc, L):
    s = 0.0
    for j in range(cc * L, (cc + 1) * L):
        s += acc[j]
    return s


@njit(inline="always")
def _spread(a, cc, L, v):
    for j in range(cc * L, (cc + 1) * L):
        a[j] = v


@njit(parallel=True, cache=True, fastmath=_FAST)
def _forward_blocks(x, gamma, beta, eps, y, mean, var, invstd, B):
    N, C = x.shape[0], mean.shape[0]
    L = x.shape[1] // C
    t = x.dtype.type
    m = N * L
    for blk in prange((C + B - 1) // B):
        c0 = blk * B
        nc = min(C, c0 + B) - c0
        o, w = c0 * L, nc * L
        acc = np.zeros(w)
        for n in range(N):
            xr = x[n, o:o + w]
            for i in range(w):
                acc[i] += xr[i]
        mu = np.empty(w)
        for cc in range(nc):
            _spread(mu, cc, L, _channel_sum(acc, cc, L) / m)
        acc[:] = 0.0
        for n in range(N):
            xr = x[n, o:o + w]
            for i in range(w):
                d = xr[i] - mu[i]
                acc[i] += d * d
        hi, lo, k, b = np.empty(w, x.dtype), np.empty(w, x.dtype), np.empty(w, x.dtype), np.empty(w, x.dtype)
        for cc in range(nc):
            c, mu_c, v = c0 + cc, mu[cc * L], _channel_sum(acc, cc, L) / m
            mean[c], var[c], invstd[c] = t(mu_c), t(v), t(1.0 / np.sqrt(v + eps))
            h = t(mu_c)  # mu = hi + lo, as in _forward_channels
            _spread(hi, cc, L, h)
            _spread(lo, cc, L, t(mu_c - h))
            _spread(k, cc, L, gamma[c] * invstd[c])
            _spread(b, cc, L, beta[c])
        for n in range(N):
            xr, yr = x[n, o:o + w], y[n, o:o + w]
            for i in range(w):
                yr[i] = ((xr[i] - hi[i]) - lo[i]) * k[i] + b[i]


@njit(parallel=True, cache=True, fastmath=_FAST)
def _eval_blocks(x, mean, k, beta, y, B, act):
    N, C = x.shape[0], mean.shape[0]
    L = x.shape[1] // C
    for blk in prange((C + B - 1) // B):
        c0 = blk * B
        nc = min(C, c0 + B) - c0
        o, w = c0 * L, nc * L
        mu, kk, b = np.empty(w, x.dtype), np.empty(w, x.dtype), np.empty(w, x.dtype)
        for cc in range(nc):
            _spread(mu, cc, L, mean[c0 + cc])
            _spread(kk, cc, L, k[c0 + cc])
            _spread(b, cc, L, beta[c0 + cc])
        for n in range(N):
            xr, yr = x[n, o:o + w], y[n, o:o + w]
            for i in range(w):
                yr[i] = _activate((xr[i] - mu[i]) * kk[i] + b[i], act)


@njit(parallel=True, cache=True, fastmath=_FAST)
def _backward_blocks(gy, x, mean, invstd, k, training, gx, sum_gy, sum_gy_xhat, B):
    N, C = x.shape[0], mean.shape[0]
    L = x.shape[1] // C
    t = x.dtype.type
    m = N * L
    for blk in prange((C + B - 1) // B):
        c0 = blk * B
        nc = min(C, c0 + B) - c0
        o, w = c0 * L, nc * L
        mu, inv = np.empty(w, x.dtype), np.empty(w, x.dtype)
        for cc in range(nc):
            _spread(mu, cc, L, mean[c0 + cc])
            _spread(inv, cc, L, invstd[c0 + cc])
        ag, agx = np.zeros(w), np.zeros(w)
        for n in range(N):
            xr, gr = x[n, o:o + w], gy[n, o:o + w]
            for i in range(w):
                g = gr[i]
                ag[i] += g
                agx[i] += g * ((xr[i] - mu[i]) * inv[i])
        kk, a, b = np.empty(w, x.dtype), np.empty(w, x.dtype), np.empty(w, x.dtype)
        for cc in range(nc):  # the coefficients of _backward_channels, spread
            c = c0 + cc
            s, sx = _channel_sum(ag, cc, L), _channel_sum(agx, cc, L)
            sum_gy[c], sum_gy_xhat[c] = t(s), t(sx)
            _spread(kk, cc, L, k[c])
            _spread(a, cc, L, t(-k[c] * s / m) if training else t(0.0))
            _spread(b, cc, L, t(-k[c] * sx / m) * invstd[c] if training else t(0.0))
        for n in range(N):
            xr, gr, gxr = x[n, o:o + w], gy[n, o:o + w], gx[n, o:o + w]
            for i in range(w):
                gxr[i] = kk[i] * gr[i] + a[i] + b[i] * (xr[i] - mu[i])


def _blocks(x):
    """``(x as (N, C*L) rows, channels per block)`` when x's planes are small, else None."""
    N, C, L = x.shape
    if L >= _BLOCKS_BELOW_L:
        return None
    return x.reshape(N, C * L), max(1, min(_BLOCK_VALUES // L, -(-C // 8)))


def batch_norm_forward_cpu(x, gamma, beta, eps):
    """Numba training forward: per channel, the mean, the variance and y in three passes over cached data."""
    x = np.ascontiguousarray(x)
    C, dt = x.shape[1], x.dtype
    y = np.empty_like(x)
    stats = np.empty(C, dt), np.empty(C, dt), np.empty(C, dt)
    gamma, beta = _per_channel(gamma, C, dt, 1), _per_channel(beta, C, dt, 0)
    rows = _blocks(x)
    if rows is None:
        _forward_channels(x, gamma, beta, float(eps), y, *stats)
    else:
        _forward_blocks(rows[0], gamma, beta, float(eps), y.reshape(rows[0].shape), *stats, rows[1])
    return (y,) + stats


def batch_norm_eval_cpu(x, mean, k, beta, activation=None, out=None):
    """Numba affine map ``(x - mean) k + beta``, and the activation: one pass (in place when ``out`` is x: each
    value is read before it is written)."""
    _check_eval(x, activation, out)
    x = np.ascontiguousarray(x)
    C, dt = x.shape[1], x.dtype
    y = np.empty_like(x) if out is None else out
    coefs = _per_channel(mean, C, dt, 0), _per_channel(k, C, dt, 1), _per_channel(beta, C, dt, 0)
    rows = _blocks(x)
    if rows is None:
        _eval_channels(x, *coefs, y, ACTIVATIONS[activation])
    else:
        _eval_blocks(rows[0], *coefs, y.reshape(rows[0].shape), rows[1], ACTIVATIONS[activation])
    return y


def batch_norm_backward_cpu(gy, x, mean, invstd, k, training):
    """Numba backward: per channel, the two sums in one pass, then dx in a second pass over cached data."""
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy, dtype=x.dtype)
    C, dt = x.shape[1], x.dtype
    gx = np.empty_like(x)
    sums = np.empty(C, dt), np.empty(C, dt)
    coefs = _per_channel(mean, C, dt, 0), _per_channel(invstd, C, dt, 1), _per_channel(k, C, dt, 1), bool(training)
    rows = _blocks(x)
    if rows is None:
        _backward_channels(gy, x, *coefs, gx, *sums)
    else:
        shape = rows[0].shape
        _backward_blocks(gy.reshape(shape), rows[0], *coefs, gx.reshape(shape), *sums, rows[1])
    return (gx,) + sums


# tinyconv's thread policy (tinyconv/threads.py) runs a Numba kernel on one thread below 2**24 elements, or below
# its own ``parallel_min_size``.  Measured on the 2-core machine (mobilenet_v2 training step, batch 16, 64x64;
# batch norm's share, forward + backward, one thread throughout: 17.5 ms): with no other load, two threads
# from 2**16 elements took 13 ms and from 2**19 15 ms; with one core busy elsewhere they took 115-130 and
# 28-46 ms, every parallel region waiting for a thread that waits for a scheduler slice.  Two threads save
# about a third of a kernel's time, a lost slice costs a millisecond or more: they pay for themselves, on a
# machine that is busy half of the time, only for kernels of a few milliseconds, about 2**22 elements.
for _kernel in (batch_norm_forward_cpu, batch_norm_backward_cpu, batch_norm_eval_cpu):
    _kernel.parallel_min_size = 1 << 22
