"""2-D convolution (cross-correlation, as in PyTorch) by im2col + GEMM, grouped convolution included.

Shapes: input x (N, C, H, W); weight (K, C/G, KH, KW) (PyTorch's layout); bias (K,); output (N, K, OH, OW);
stride (SH, SW), zero padding (PH, PW) on the top/left, dilation (DH, DW), G groups.

    y[n, k, oh, ow] = b[k] + sum over c in k's group, kh, kw of
                      W[k, c, kh, kw] * x[n, c, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]

    OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1        (the same for OW)

How it is computed.  ``im2col`` (kernels/im2col.py) unfolds every window into a column:
``col[c, kh, kw, n, oh, ow]``, which is, without any copy, a matrix of shape (C*KH*KW, N*OH*OW).  The
weight reshaped (also free) to (K, C*KH*KW) multiplies it: one GEMM for the whole batch,
``Y = W @ col`` of shape (K, N*OH*OW).  With G groups the same reshapes give a stack of G GEMMs, done
by one batched ``matmul``: (G, K/G, C/G*KH*KW) @ (G, C/G*KH*KW, N*OH*OW).  Putting the channel axis
first in col is what lets col and W meet with no transpose; the price is one copy of the *output*
(K, N, OH, OW) -> (N, K, OH, OW), done together with the bias add, and one of the output gradient in
backward: arrays KH*KW*C/K times smaller than col.

Backward, per group, writing Y = W col with dY its gradient (K, N*OH*OW):

    dW   = dY @ col^T            (dL/dW[k,r] = sum_p dY[k,p] col[r,p])
    dcol = W^T @ dY              (dL/dcol[r,p] = sum_k W[k,r] dY[k,p])
    dx   = col2im(dcol)          (im2col copies each x element to several places; its adjoint adds them back)
    db   = sum of dY over N, OH, OW

Depthwise convolution (``groups == C > 1``) is dispatched to a direct kernel (``depthwise.py``).
"""

from .. import backend
from ..backend import get_array_module, get_kernel
from ..core import Function
from ..threads import gemm


def _pair(value, name):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def conv_geometry(where, x_shape, w_shape, stride, padding, dilation, groups):
    """Check a convolution's arguments; return ``(SH, SW), (PH, PW), (DH, DW), (OH, OW)``.

    ``padding`` is an int, a pair, ``'valid'`` (no padding) or ``'same'`` (output size = input size, stride 1
    only; when the dilated kernel is even-sized the extra row/column of padding goes on the bottom/right, as
    in PyTorch).  Only the top/left padding is returned: the output size implies the rest.
    ``where`` names the layer or function in error messages.
    """
    if len(w_shape) != 4:
        raise ValueError(f"{where}: expected a weight of shape (K, C/groups, KH, KW), got {tuple(w_shape)}")
    K, Cg, KH, KW = w_shape
    if groups < 1 or K % groups:
        raise ValueError(f"{where}: out_channels ({K}) must be divisible by groups ({groups})")
    if len(x_shape) != 4 or x_shape[1] != Cg * groups:
        raise ValueError(f"{where}: expected input of shape (N, {Cg * groups}, H, W), got {tuple(x_shape)}")
    H, W = x_shape[2:]
    (SH, SW), (DH, DW) = _pair(stride, "stride"), _pair(dilation, "dilation")
    if min(SH, SW) < 1 or min(DH, DW) < 1:
        raise ValueError(f"{where}: stride and dilation must be >= 1, got stride={(SH, SW)}, dilation={(DH, DW)}")
    EKH, EKW = DH * (KH - 1) + 1, DW * (KW - 1) + 1  # extent of the dilated kernel
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if (SH, SW) != (1, 1):
                raise ValueError(f"{where}: padding='same' is not supported for strided convolutions "
                                 f"(stride={(SH, SW)})")
            # total padding EK - 1, the odd one out on the bottom/right
            return (1, 1), ((EKH - 1) // 2, (EKW - 1) // 2), (DH, DW), (H, W)
        else:
            raise ValueError(f"{where}: padding must be 'same', 'valid', an int or a pair, got {padding!r}")
    PH, PW = _pair(padding, "padding")
    if min(PH, PW) < 0:
        raise ValueError(f"{where}: padding must be >= 0, got {(PH, PW)}")
    OH, OW = (H + 2 * PH - EKH) // SH + 1, (W + 2 * PW - EKW) // SW + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"{where}: kernel size {(KH, KW)} (dilated extent {(EKH, EKW)}) is larger than the "
                         f"padded input {(H + 2 * PH, W + 2 * PW)}: computed output size {(OH, OW)}")
    return (SH, SW), (PH, PW), (DH, DW), (OH, OW)


def check_operands(where, x, w, b):
    """Dtype and bias-shape checks shared by conv2d and depthwise_conv2d."""
    if x.dtype != w.dtype:
        raise TypeError(f"{where}: input dtype {x.dtype} does not match weight dtype {w.dtype}")
    if b is not None:
        if b.dtype != w.dtype:
            raise TypeError(f"{where}: bias dtype {b.dtype} does not match weight dtype {w.dtype}")
        if b.shape != (w.shape[0],):
            raise ValueError(f"{where}: expected a bias of shape ({w.shape[0]},), got {tuple(b.shape)}")


class Conv2dFn(Function):
    """im2col + (batched) GEMM; hyper-parameters ``stride, padding, dilation, out_size, groups`` (pairs)."""

    def forward(self, x, w, b):
        xp = get_array_module(x)
        N, C, H, W = x.shape
        K, Cg, KH, KW = w.shape
        G, (SH, SW), (PH, PW), (DH, DW), (OH, OW) = self.groups, self.stride, self.padding, self.dilation, self.out_size
        if backend.is_shape_only():  # tinyconv.summary: count the multiply-accumulates, skip the arithmetic
            backend.count_macs(N * K * OH * OW * Cg * KH * KW)
            return xp.zeros((N, K, OH, OW), x.dtype)
        # backward rebuilds col from x instead of keeping it: col is KH*KW times larger than x, and x is
        # usually kept alive by the graph anyway; one more im2col is cheap next to the two GEMMs
        self.x, self.w, self.has_bias = xp.ascontiguousarray(x), w, b is not None
        col = self.im2col(self.x, KH, KW)
        # Y[g] = W[g] @ col[g]: (G, K/G, C/G*KH*KW) @ (G, C/G*KH*KW, N*OH*OW) -> (K, N, OH, OW)
        with gemm(N * K * OH * OW * Cg * KH * KW):  # small products on one BLAS thread (threads.py)
            y = xp.matmul(w.reshape(G, K // G, Cg * KH * KW), col).reshape(K, N, OH, OW)
        del col
        out = xp.empty((N, K, OH, OW), x.dtype)
        # the one copy, to NCHW, with the bias added on the way
        if b is None:
            out[...] = y.transpose(1, 0, 2, 3)
        else:
            xp.add(y.transpose(1, 0, 2, 3), b.reshape(K, 1, 1), out=out)
        return out

    def im2col(self, x, KH, KW):
        """The windows of x as G matrices of (C/G*KH*KW) rows by N*OH*OW columns (a free reshape)."""
        (SH, SW), (PH, PW), (DH, DW), (OH, OW) = self.stride, self.padding, self.dilation, self.out_size
        col = get_kernel("im2col", x)(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)
        return col.reshape(self.groups, -1, x.shape[0] * OH * OW)

    def backward(self, gy):
        xp = get_array_module(gy)
        N, C, H, W = self.x.shape
        K, Cg, KH, KW = self.w.shape
        OH, OW = gy.shape[2:]
        G, R, P = self.groups, Cg * KH * KW, N * OH * OW  # R rows of col per group, P columns
        need_x, need_w, need_b = self.needs_input_grad
        # dY in the GEMM's layout (K, N*OH*OW), split into groups: the one copy of the backward
        gy_t = xp.ascontiguousarray(gy.transpose(1, 0, 2, 3)).reshape(G, K // G, P)
        # db = sum of dY over N, OH, OW
        gb = gy_t.reshape(K, P).sum(axis=1) if self.has_bias and need_b else None
        # dW = dY @ col^T, computed as (col @ dY^T)^T: the same products, but with the long N*OH*OW axis
        # inside, OpenBLAS is several times faster when the tall R x K/G result is the one it computes
        gw = gx = None
        if need_w:
            col = self.im2col(self.x, KH, KW)
            with gemm(K * R * P):  # small products on one BLAS thread (threads.py)
                gw = xp.matmul(col, gy_t.transpose(0, 2, 1)).transpose(0, 2, 1).reshape(self.w.shape)
            del col
        if need_x:
            # dcol = W^T @ dY, then dx = col2im(dcol): each x element collects the gradient of all its copies
            with gemm(K * R * P):
                gcol = xp.matmul(self.w.reshape(G, K // G, R).transpose(0, 2, 1), gy_t)
            (SH, SW), (PH, PW), (DH, DW) = self.stride, self.padding, self.dilation
            gx = get_kernel("col2im", gcol)(gcol.reshape(C, KH, KW, N, OH, OW), H, W, SH, SW, PH, PW, DH, DW)
        return gx, gw, gb


def _conv2d(where, input, weight, bias, stride, padding, dilation, groups):
    """conv2d with ``where`` naming the caller in errors (``nn.Conv2d`` passes its own description)."""
    if input.ndim == 3:  # unbatched (C, H, W), as PyTorch allows
        y = _conv2d(where, input.reshape((1,) + input.shape), weight, bias, stride, padding, dilation, groups)
        return y.reshape(y.shape[1:])
    check_operands(where, input, weight, bias)
    stride, padding, dilation, out_size = conv_geometry(where, input.shape, weight.shape, stride, padding,
                                                        dilation, groups)
    hyper = dict(stride=stride, padding=padding, dilation=dilation, out_size=out_size)
    if groups == input.shape[1] > 1:
        from .depthwise import DepthwiseConv2dFn  # imported here: depthwise.py uses this module's checks
        return DepthwiseConv2dFn.apply(input, weight, bias, **hyper)
    from .grouped import GroupedConv2dFn, direct_pays  # few channels per group: direct kernels
    if direct_pays(input, weight.shape, groups):
        return GroupedConv2dFn.apply(input, weight, bias, **hyper)
    return Conv2dFn.apply(input, weight, bias, groups=groups, **hyper)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution with PyTorch's ``F.conv2d`` semantics (cross-correlation, no kernel flip).

    input (N, C, H, W) or (C, H, W); weight (K, C/groups, KH, KW); bias (K,) or None.  ``stride``,
    ``dilation``: int or pair; ``padding``: int, pair, ``'valid'`` or ``'same'`` (stride 1; odd total
    padding puts the extra row/column at the bottom/right).  Returns (N, K, OH, OW) with
    ``OH = (H + 2*PH - DH*(KH-1) - 1) // SH + 1``.  Computed as im2col + GEMM (see the module docstring);
    ``groups == C > 1`` (depthwise, any channel multiplier) runs the direct kernel of ``depthwise_conv2d``.
    """
    where = f"conv2d(weight of shape {tuple(weight.shape)}, groups={groups})"
    return _conv2d(where, input, weight, bias, stride, padding, dilation, groups)
