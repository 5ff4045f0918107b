"""Depthwise 2-D convolution (``groups == C``), computed by direct kernels instead of im2col + GEMM.

Shapes: input x (N, C, H, W); weight (K, 1, KH, KW) with K = C*M (M filters per input channel, the
"channel multiplier"); bias (K,); output (N, K, OH, OW); stride (SH, SW), top/left padding (PH, PW),
dilation (DH, DW).  Output channel k reads only input channel c = k // M:

    y[n, k, oh, ow] = b[k] + sum_{kh,kw} W[k, 0, kh, kw] * x[n, k // M, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]

Every group of an im2col GEMM would be an (M x KH*KW) by (KH*KW x N*OH*OW) product: far too thin for a GEMM
to pay for the col buffer, so MobileNet/EfficientNet/Xception layers use the kernels of
``kernels/depthwise.py`` on every backend (NumPy reference, Numba CPU, numba.cuda).  ``conv2d``'s own
kernels (kernels/conv2d.py) run the same direct kernels for such layers, except under
``TINYCONV_KERNELS=numpy``, where ``conv2d`` is the textbook im2col + GEMM.

Backward (formulas in ``kernels/depthwise.py``):

    dx = depthwise_conv2d_grad_input(dY, W)     (each x element collects dY times the weights that read it)
    dW = depthwise_conv2d_grad_weight(x, dY)    (each weight: sum over N, OH, OW of dY times the x it read)
    db = sum of dY over N, OH, OW
"""
from ..backend import get_array_module, get_kernel
from ..core import Function
from .conv import check_operands, conv_geometry


class DepthwiseConv2dFn(Function):
    """Direct depthwise convolution; hyper-parameters ``stride, padding, dilation, out_size`` (pairs)."""

    def forward(self, x, w, b):
        xp = get_array_module(x)
        K, _, KH, KW = w.shape
        (SH, SW), (PH, PW), (DH, DW), (OH, OW) = self.stride, self.padding, self.dilation, self.out_size
        # saved for backward: x (dW reads its windows) and the taps w as (K, KH, KW) (dx reads them)
        self.x = xp.ascontiguousarray(x)
        self.w = xp.ascontiguousarray(w.reshape(K, KH, KW))
        self.has_bias = b is not None
        y = get_kernel("depthwise_conv2d", x)(self.x, self.w, SH, SW, PH, PW, DH, DW, OH, OW)
        if b is not None:
            y += b.reshape(K, 1, 1)
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        gy = xp.ascontiguousarray(gy)
        N, C, H, W = self.x.shape
        K, KH, KW = self.w.shape
        (SH, SW), (PH, PW), (DH, DW) = self.stride, self.padding, self.dilation
        need_x, need_w, need_b = self.needs_input_grad
        gx = gw = gb = None
        if need_x and need_w:
            # both at once, reading dY once (the formulas below)
            gx, gw = get_kernel("depthwise_conv2d_backward", gy)(self.x, gy, self.w, SH, SW, PH, PW, DH, DW)
            gw = gw.reshape(K, 1, KH, KW)
        elif need_x:
            # dx[n,c,h,w] = sum over m, kh, kw of W[c*M+m, kh, kw] * dY at the window that put (kh,kw) on (h,w)
            gx = get_kernel("depthwise_conv2d_grad_input", gy)(gy, self.w, C, H, W, SH, SW, PH, PW, DH, DW)
        elif need_w:
            # dW[k,kh,kw] = sum over n, oh, ow of dY[n,k,oh,ow] * x[n, k//M, tap (kh,kw) of window (oh,ow)]
            gw = get_kernel("depthwise_conv2d_grad_weight", gy)(self.x, gy, KH, KW, SH, SW, PH, PW, DH, DW)
            gw = gw.reshape(K, 1, KH, KW)
        if self.has_bias and need_b:
            # db = sum of dY over N, OH, OW
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gw, gb


def depthwise_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1):
    """Depthwise convolution: ``conv2d(input, weight, bias, stride, padding, dilation, groups=C)``.

    input (N, C, H, W) or (C, H, W); weight (C*M, 1, KH, KW) for a channel multiplier M; bias (C*M,) or
    None.  ``stride``, ``dilation``: int or pair; ``padding``: int, pair, ``'valid'`` or ``'same'``.
    Returns (N, C*M, OH, OW).  Runs the direct depthwise kernels (never im2col), also for C == 1.
    """
    where = f"depthwise_conv2d(weight of shape {tuple(weight.shape)})"
    if input.ndim == 3:  # unbatched (C, H, W)
        y = depthwise_conv2d(input.reshape((1,) + input.shape), weight, bias, stride, padding, dilation)
        return y.reshape(y.shape[1:])
    if input.ndim != 4:
        raise ValueError(f"{where}: expected input of shape (N, C, H, W), got {tuple(input.shape)}")
    C = input.shape[1]
    check_operands(where, input, weight, bias)
    if weight.ndim != 4 or weight.shape[1] != 1 or weight.shape[0] % C:
        raise ValueError(f"{where}: expected a weight of shape (M*{C}, 1, KH, KW) for input of shape "
                         f"{tuple(input.shape)}")
    stride, padding, dilation, out_size = conv_geometry(where, input.shape, weight.shape, stride, padding,
                                                        dilation, C)
    return DepthwiseConv2dFn.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation,
                                   out_size=out_size)
