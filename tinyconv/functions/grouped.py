"""Grouped 2-D convolution with few channels per group, computed by direct kernels instead of im2col + GEMM.

Shapes: input x (N, C, H, W); weight (K, Cg, KH, KW) with G groups, Cg = C/G input and Kg = K/G output
channels per group; bias (K,); output (N, K, OH, OW); stride (SH, SW), top/left padding (PH, PW), dilation
(DH, DW).  Output channel k belongs to group g = k // Kg and reads input channels g*Cg .. g*Cg + Cg - 1:

    y[n, k, oh, ow] = b[k] + sum_{j,kh,kw} W[k, j, kh, kw] * x[n, g*Cg + j, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]

When Cg*KH*KW is small (ResNeXt's 32x4d blocks: 4*3*3 = 36) each group's im2col GEMM is a thin
(Kg x Cg*KH*KW) matrix times a column matrix KH*KW times the input: BLAS then waits on memory.  The kernels
of ``kernels/grouped.py`` read x in place instead.  ``conv2d``'s CPU kernel (kernels/conv2d.py) runs the same
direct kernels when 1 < groups < C and Cg*KH*KW <= ``DIRECT_MAX_TAPS``.

Backward (formulas in ``kernels/grouped.py``):

    dx = grouped_conv2d_grad_input(dY, W)     (each x element collects dY times the weights that read it)
    dW = grouped_conv2d_grad_weight(x, dY)    (each weight: sum over N, OH, OW of dY times the x it read)
    db = sum of dY over N, OH, OW
"""
from ..backend import get_array_module, get_kernel
from ..core import Function
from .conv import check_operands, conv_geometry


class GroupedConv2dFn(Function):
    """Direct grouped convolution; hyper-parameters ``stride, padding, dilation, out_size`` (pairs), ``groups``."""

    def forward(self, x, w, b):
        xp = get_array_module(x)
        K = w.shape[0]
        (SH, SW), (PH, PW), (DH, DW), (OH, OW) = self.stride, self.padding, self.dilation, self.out_size
        # saved for backward: x (dW reads its windows) and w (dx reads it)
        self.x, self.w = xp.ascontiguousarray(x), xp.ascontiguousarray(w)
        self.has_bias = b is not None
        y = get_kernel("grouped_conv2d", x)(self.x, self.w, SH, SW, PH, PW, DH, DW, OH, OW)
        if b is not None:
            y += b.reshape(K, 1, 1)
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        gy = xp.ascontiguousarray(gy)
        N, C, H, W = self.x.shape
        K, Cg, KH, KW = self.w.shape
        (SH, SW), (PH, PW), (DH, DW) = self.stride, self.padding, self.dilation
        need_x, need_w, need_b = self.needs_input_grad
        gx = gw = gb = None
        if need_x:
            # dx[n,c,h,w] = sum over k of c's group, kh, kw of W[k, c mod Cg, kh, kw] * dY at the window
            #               (oh, ow) that put tap (kh, kw) on (h, w): the correlation transposed, as a gather
            gx = get_kernel("grouped_conv2d_grad_input", gy)(gy, self.w, C, H, W, SH, SW, PH, PW, DH, DW)
        if need_w:
            # dW[k,j,kh,kw] = sum over n, oh, ow of dY[n,k,oh,ow] * x[n, g*Cg + j, tap (kh,kw) of window (oh,ow)]
            gw = get_kernel("grouped_conv2d_grad_weight", gy)(self.x, gy, C // Cg, KH, KW,
                                                              SH, SW, PH, PW, DH, DW)
        if self.has_bias and need_b:
            # db = sum of dY over N, OH, OW
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gw, gb


def grouped_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Grouped convolution by the direct kernels: ``conv2d(input, weight, bias, stride, padding, dilation, groups)``.

    input (N, C, H, W) or (C, H, W); weight (K, C/groups, KH, KW); bias (K,) or None.  ``stride``,
    ``dilation``: int or pair; ``padding``: int, pair, ``'valid'`` or ``'same'``.  Returns (N, K, OH, OW).
    Always the direct kernels, whatever the group size (``conv2d`` picks them only where they are faster).
    """
    where = f"grouped_conv2d(weight of shape {tuple(weight.shape)}, groups={groups})"
    if input.ndim == 3:  # unbatched (C, H, W)
        y = grouped_conv2d(input.reshape((1,) + input.shape), weight, bias, stride, padding, dilation, groups)
        return y.reshape(y.shape[1:])
    if input.ndim != 4:
        raise ValueError(f"{where}: expected input of shape (N, C, H, W), got {tuple(input.shape)}")
    check_operands(where, input, weight, bias)
    stride, padding, dilation, out_size = conv_geometry(where, input.shape, weight.shape, stride, padding,
                                                        dilation, groups)
    return GroupedConv2dFn.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation,
                                 out_size=out_size)
