"""Pooling over NCHW tensors: max, average, adaptive average and adaptive max, global average.

Shapes: N batch, C channels, H, W input height and width, KH, KW window, SH, SW stride, PH, PW implicit
padding (both sides), DH, DW dilation (max pooling only), OH, OW output height and width.  A 3-D input
(C, H, W) is pooled as a batch of one and returned 3-D, as in PyTorch.

Output size, PyTorch's rule (per axis; shown for H):

    OH = floor((H + 2 PH - DH (KH - 1) - 1 + (SH - 1 if ceil_mode else 0)) / SH) + 1

and with ``ceil_mode`` the last window must start inside the input or its left padding, else it is dropped:
``if (OH - 1) SH >= H + PH: OH -= 1``.  Padding may be at most half the (undilated) window.

Max and average pooling run on the kernels of ``kernels/pooling.py`` (through ``backend.get_kernel``).
Adaptive pooling is plain array code: along each axis it is a fixed linear map (average) or a loop over
the OH x OW windows (max); it runs once per network, on small maps.
"""
import numpy as np

from ..backend import get_array_module, get_kernel
from ..core import Function, Tensor
from ..grad_mode import is_grad_enabled


def _pair(value, what, op):
    """``3`` -> ``(3, 3)``; ``(3, 2)`` stays; anything else is an error naming the op."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{op}: {what} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in pair)


def pool_output_size(size, K, S, P, D, ceil_mode):
    """Output length of a pooling window ``K`` (stride ``S``, padding ``P``, dilation ``D``) over ``size``."""
    out = (size + 2 * P - D * (K - 1) - 1 + (S - 1 if ceil_mode else 0)) // S + 1
    if ceil_mode and (out - 1) * S >= size + P:
        out -= 1                     # the last window would start in the right padding: drop it
    return out


def _batched(x, op):
    """``(x as (N, C, H, W), was_3d)``; other ranks raise."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: expected input of shape (N, C, H, W) or (C, H, W), got {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point input, got dtype {x.dtype}")
    return (x.reshape(1, *x.shape), True) if x.ndim == 3 else (x, False)


def _unbatched(y, was_3d):
    return y.reshape(y.shape[1:]) if was_3d else y


def _geometry(op, shape, kernel_size, stride, padding, dilation, ceil_mode):
    """Validated ``(KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW)`` for an input of ``shape`` (N, C, H, W)."""
    kernel = _pair(kernel_size, "kernel_size", op)
    empty = stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0)
    stride = kernel if empty else _pair(stride, "stride", op)                # PyTorch: None or [] -> kernel
    padding, dilation = _pair(padding, "padding", op), _pair(dilation, "dilation", op)
    for what, v in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        if min(v) <= 0:
            raise ValueError(f"{op}: {what} should be greater than zero, got {what}={v}")
    if min(padding) < 0:
        raise ValueError(f"{op}: padding should be non-negative, got padding={padding}")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: pad should be at most half of kernel size, got padding={padding} "
                         f"for kernel_size={kernel}")
    out = tuple(pool_output_size(n, k, s, p, d, ceil_mode)
                for n, k, s, p, d in zip(shape[2:], kernel, stride, padding, dilation))
    if min(out) <= 0:
        raise ValueError(f"{op}: given input of shape {tuple(shape)}, the computed output size is "
                         f"(N, C, {out[0]}, {out[1]}): output size is too small")
    return kernel, stride, padding, dilation, out


# -- max pooling -----------------------------------------------------------------------------------------
class MaxPool2dFn(Function):
    """Max pooling; the argmax (flat index ``h*W + w`` in the input plane) is kept for backward.

    ``keep_argmax=False`` (given by ``max_pool2d`` when no gradient will pass: grad mode off, or an input that
    needs none) computes the values alone: on the CPU 1.2-3.5x faster than with the argmax (``kernels/pooling.py``).
    """
    keep_argmax = True

    def forward(self, x):
        self.in_hw = x.shape[2:]
        geometry = (*self.kernel, *self.stride, *self.padding, *self.dilation, *self.out_hw)
        if not self.keep_argmax:
            return get_kernel("max_pool2d_values", x)(x, *geometry)
        y, self.argmax = get_kernel("max_pool2d_forward", x)(x, *geometry)
        return y

    def backward(self, gy):
        # dx[n, c].flat[argmax] += dy: each output's gradient goes to the input that was its maximum
        return get_kernel("max_pool2d_backward", gy)(gy, self.argmax, *self.in_hw)


class MaxPool2dWithIndicesFn(MaxPool2dFn):
    """``MaxPool2dFn`` that also outputs the argmax (``return_indices=True``); the indices get no gradient."""

    def forward(self, x):
        return super().forward(x), self.argmax

    def backward(self, gy, g_indices):
        return super().backward(gy)


def _max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, layer):
    op = layer if layer is not None else "max_pool2d"
    x, was_3d = _batched(input, op)
    kernel, stride, padding, dilation, out = _geometry(op, x.shape, kernel_size, stride, padding, dilation,
                                                       ceil_mode)
    hyper = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation, out_hw=out)
    if not return_indices:
        keep_argmax = is_grad_enabled() and isinstance(x, Tensor) and x.requires_grad  # Function.__call__'s rule
        return _unbatched(MaxPool2dFn.apply(x, keep_argmax=keep_argmax, **hyper), was_3d)
    y, indices = MaxPool2dWithIndicesFn.apply(x, **hyper)
    return _unbatched(y, was_3d), Tensor(_unbatched(indices.data, was_3d))


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D max pooling (PyTorch's ``F.max_pool2d``).

    ``y[n, c, oh, ow] = max_{kh < KH, kw < KW} x[n, c, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]`` over
    positions inside the input (padding never wins).  input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW).

    kernel_size, stride (default: kernel_size), padding, dilation: an int or a pair (rows, columns).
    ceil_mode: round the output size up (see the module docstring).  return_indices: also return the
    argmax as an int64 tensor of flat indices ``h*W + w`` into each input plane (PyTorch's indices).
    Overlapping windows (AlexNet's 3x3 stride 2) are fine: backward sums the gradient of every window whose
    maximum an input was.
    """
    return _max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, None)


# -- average pooling -------------------------------------------------------------------------------------
class AvgPool2dFn(Function):
    """Average pooling with PyTorch's divisor (see ``avg_pool2d``)."""

    def forward(self, x):
        self.in_hw = x.shape[2:]
        return get_kernel("avg_pool2d_forward", x)(x, *self.kernel, *self.stride, *self.padding, *self.out_hw,
                                                   self.count_include_pad, self.divisor_override)

    def backward(self, gy):
        # dx[window] += dy / divisor: the average spreads its gradient evenly over the window
        return get_kernel("avg_pool2d_backward", gy)(gy, *self.in_hw, *self.kernel, *self.stride, *self.padding,
                                                     self.count_include_pad, self.divisor_override)


def _avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, layer):
    op = layer if layer is not None else "avg_pool2d"
    x, was_3d = _batched(input, op)
    kernel, stride, padding, _, out = _geometry(op, x.shape, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and (not isinstance(divisor_override, (int, np.integer))
                                         or divisor_override <= 0):
        raise ValueError(f"{op}: divisor_override must be a positive int or None, got {divisor_override!r}")
    y = AvgPool2dFn.apply(x, kernel=kernel, stride=stride, padding=padding, out_hw=out,
                          count_include_pad=bool(count_include_pad), divisor_override=int(divisor_override or 0))
    return _unbatched(y, was_3d)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling (PyTorch's ``F.avg_pool2d``).  input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW).

    ``y = (sum of the input values in the window) / divisor`` with PyTorch's divisor: ``divisor_override``
    if given; else, with ``count_include_pad``, the window size clipped to the padded input (zeros of the
    padding count, the part of a ``ceil_mode`` window beyond the padding does not); else the number of real
    input positions in the window.
    """
    return _avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, None)


# -- adaptive pooling ------------------------------------------------------------------------------------
def adaptive_window(i, size, out):
    """PyTorch's adaptive window ``i`` of ``out`` over ``size``: ``[floor(i*size/out), ceil((i+1)*size/out))``."""
    return (i * size) // out, -((-(i + 1) * size) // out)


def _adaptive_out(op, shape, output_size):
    """``output_size`` (int, or a pair whose ``None`` entries keep the input's size) -> ``(OH, OW)``."""
    pair = (output_size, output_size) if output_size is None or isinstance(output_size, (int, np.integer)) \
        else tuple(output_size)
    if len(pair) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    out = tuple(int(n if o is None else o) for o, n in zip(pair, shape[2:]))
    if min(out) <= 0:
        raise ValueError(f"{op}: output size must be positive, got {out} from output_size={output_size!r} "
                         f"for input of shape {tuple(shape)}")
    return out


def _averaging_matrix(xp, size, out, dtype):
    """(out, size) matrix whose row i averages adaptive window i."""
    P = np.zeros((out, size), dtype=dtype)
    for i in range(out):
        start, end = adaptive_window(i, size, out)
        P[i, start:end] = 1 / (end - start)
    return xp.asarray(P)


class GlobalAvgPool2dFn(Function):
    """Mean over H and W, keeping them as 1x1."""

    def forward(self, x):
        self.in_shape = x.shape
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, gy):
        xp = get_array_module(gy)
        # dx = dy / (H*W) at every position
        return xp.broadcast_to(gy / (self.in_shape[2] * self.in_shape[3]), self.in_shape).copy()


class AdaptiveAvgPool2dFn(Function):
    """Adaptive average pooling as two linear maps: ``y = P_h @ x @ P_w^T`` (P from ``_averaging_matrix``)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.P_h = _averaging_matrix(xp, x.shape[2], self.out_hw[0], x.dtype)
        self.P_w = _averaging_matrix(xp, x.shape[3], self.out_hw[1], x.dtype)
        return self.P_h @ x @ self.P_w.T

    def backward(self, gy):
        # dx = P_h^T @ dy @ P_w
        return self.P_h.T @ gy @ self.P_w


class AdaptiveMaxPool2dFn(Function):
    """Adaptive max pooling by a loop over the OH x OW windows; backward scatters through the argmax."""

    def forward(self, x):
        xp = get_array_module(x)
        N, C, H, W = x.shape
        self.in_hw = (H, W)
        y = xp.empty((N, C) + self.out_hw, dtype=x.dtype)
        self.argmax = xp.empty((N, C) + self.out_hw, dtype=np.int64)
        for oh in range(self.out_hw[0]):
            h0, h1 = adaptive_window(oh, H, self.out_hw[0])
            for ow in range(self.out_hw[1]):
                w0, w1 = adaptive_window(ow, W, self.out_hw[1])
                window = x[:, :, h0:h1, w0:w1].reshape(N, C, -1)
                j = window.argmax(axis=2)             # first maximum in row-major order; NaN wins
                y[:, :, oh, ow] = xp.take_along_axis(window, j[..., None], axis=2)[..., 0]
                self.argmax[:, :, oh, ow] = (h0 + j // (w1 - w0)) * W + w0 + j % (w1 - w0)
        return y

    def backward(self, gy):
        # dx[n, c].flat[argmax] += dy, as for max_pool2d
        return get_kernel("max_pool2d_backward", gy)(gy, self.argmax, *self.in_hw)


class AdaptiveMaxPool2dWithIndicesFn(AdaptiveMaxPool2dFn):
    """``AdaptiveMaxPool2dFn`` that also outputs the argmax; the indices get no gradient."""

    def forward(self, x):
        return super().forward(x), self.argmax

    def backward(self, gy, g_indices):
        return super().backward(gy)


def _adaptive_avg_pool2d(input, output_size, layer):
    op = layer if layer is not None else "adaptive_avg_pool2d"
    x, was_3d = _batched(input, op)
    out = _adaptive_out(op, x.shape, output_size)
    y = GlobalAvgPool2dFn.apply(x) if out == (1, 1) else AdaptiveAvgPool2dFn.apply(x, out_hw=out)
    return _unbatched(y, was_3d)


def adaptive_avg_pool2d(input, output_size):
    """Adaptive average pooling to ``output_size`` (PyTorch's ``F.adaptive_avg_pool2d``).

    ``output_size``: an int (square), or a pair whose ``None`` entries keep the input's size.  Output cell
    (i, j) averages rows ``[floor(i*H/OH), ceil((i+1)*H/OH))`` and the columns likewise, so windows may
    overlap by one and have different sizes when OH does not divide H.  (N, C, H, W) -> (N, C, OH, OW);
    3-D (C, H, W) input too.  Output 1x1 is a plain mean over H and W.
    """
    return _adaptive_avg_pool2d(input, output_size, None)


def global_avg_pool2d(input):
    """Mean over each channel's H x W map: (N, C, H, W) -> (N, C, 1, 1), i.e. ``adaptive_avg_pool2d(x, 1)``."""
    return _adaptive_avg_pool2d(input, 1, "global_avg_pool2d")


def _adaptive_max_pool2d(input, output_size, return_indices, layer):
    op = layer if layer is not None else "adaptive_max_pool2d"
    x, was_3d = _batched(input, op)
    out = _adaptive_out(op, x.shape, output_size)
    (H, W), (OH, OW) = x.shape[2:], out
    if H % OH == 0 and W % OW == 0 and not return_indices:
        # equal windows that tile the input: ordinary max pooling, on its kernel
        k = (H // OH, W // OW)
        y = MaxPool2dFn.apply(x, kernel=k, stride=k, padding=(0, 0), dilation=(1, 1), out_hw=out)
        return _unbatched(y, was_3d)
    if not return_indices:
        return _unbatched(AdaptiveMaxPool2dFn.apply(x, out_hw=out), was_3d)
    y, indices = AdaptiveMaxPool2dWithIndicesFn.apply(x, out_hw=out)
    return _unbatched(y, was_3d), Tensor(_unbatched(indices.data, was_3d))


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Adaptive max pooling to ``output_size`` (PyTorch's ``F.adaptive_max_pool2d``), windows as in
    ``adaptive_avg_pool2d``.  ``return_indices``: also return the argmax (flat ``h*W + w``, int64)."""
    return _adaptive_max_pool2d(input, output_size, return_indices, None)
