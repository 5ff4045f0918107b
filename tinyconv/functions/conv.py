"""2-D convolution (cross-correlation, as in PyTorch) by im2col + GEMM, grouped convolution included.

Shapes: input x (N, C, H, W); weight (K, C/G, KH, KW) (PyTorch's layout); bias (K,); output (N, K, OH, OW);
stride (SH, SW), zero padding (PH, PW) on the top/left, dilation (DH, DW), G groups.

    y[n, k, oh, ow] = b[k] + sum over c in k's group, kh, kw of
                      W[k, c, kh, kw] * x[n, c, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]

    OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1        (the same for OW)

How it is computed: im2col (kernels/im2col.py) unfolds every window into a column,
``col[c, kh, kw, n, oh, ow]``, which is, without any copy, a matrix of shape (C*KH*KW, N*OH*OW); the weight
reshaped (also free) to (K, C*KH*KW) multiplies it.  With G groups the same reshapes give a stack of G
products.  Writing Y = W col per group, with dY its gradient:

    y    = W @ im2col(x) + b
    dW   = dY @ col^T            (dL/dW[k,r] = sum_p dY[k,p] col[r,p])
    dcol = W^T @ dY              (dL/dcol[r,p] = sum_k W[k,r] dY[k,p])
    dx   = col2im(dcol)          (im2col copies each x element to several places; its adjoint adds them back)
    db   = sum of dY over N, OH, OW

``Conv2dFn`` states this and asks ``backend`` for the ``conv2d_forward``/``conv2d_backward`` kernels
(kernels/conv2d.py).  Their NumPy reference is exactly the four lines above, the whole batch at once; the
fast implementations below the seam choose how to compute it (direct kernels for depthwise, thin grouped
and few-channel dense layers, a fully connected product for a window covering the whole image, chunks of images on several threads,
pointwise layers image by image, a small col kept for backward).
"""

from ..backend import get_kernel
from ..core import Function, Tensor, is_grad_enabled
from .normalization import _data, eval_coefficients


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
    """y = W @ im2col(x) + b; hyper-parameters ``stride, padding, dilation, out_size`` (pairs), ``groups``."""

    def forward(self, x, w, b):
        geometry = (*self.stride, *self.padding, *self.dilation, *self.out_size, self.groups)
        # saved for backward: x (dW needs its windows), w (dx needs W^T), and col if the kernel kept it
        # (only a small one; else backward rebuilds it from x, which the graph keeps anyway)
        self.x, self.w, self.has_bias = x, w, b is not None
        y, self.col = get_kernel("conv2d_forward", x)(x, w, b, *geometry)
        return y

    def backward(self, gy):
        need_x, need_w, need_b = self.needs_input_grad
        geometry = (*self.stride, *self.padding, *self.dilation, self.groups)
        # dW = dY @ col^T,  dx = col2im(W^T @ dY)   (per group)
        gx, gw = get_kernel("conv2d_backward", gy)(gy, self.x, self.w, self.col, *geometry, need_x, need_w)
        # db = sum of dY over N, OH, OW
        gb = gy.sum(axis=(0, 2, 3)) if self.has_bias and need_b else None
        return gx, gw, gb


def _conv2d(where, input, weight, bias, stride, padding, dilation, groups):
    """conv2d with ``where`` naming the caller in errors (``nn.Conv2d`` passes its own description)."""
    if input.ndim == 3:  # unbatched (C, H, W), as PyTorch allows
        y = _conv2d(where, input.reshape((1,) + input.shape), weight, bias, stride, padding, dilation, groups)
        return y.reshape(y.shape[1:])
    check_operands(where, input, weight, bias)
    stride, padding, dilation, out_size = conv_geometry(where, input.shape, weight.shape, stride, padding,
                                                        dilation, groups)
    return Conv2dFn.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation,
                          out_size=out_size, groups=groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution with PyTorch's ``F.conv2d`` semantics (cross-correlation, no kernel flip).

    input (N, C, H, W) or (C, H, W); weight (K, C/groups, KH, KW); bias (K,) or None.  ``stride``,
    ``dilation``: int or pair; ``padding``: int, pair, ``'valid'`` or ``'same'`` (stride 1; odd total
    padding puts the extra row/column at the bottom/right).  Returns (N, K, OH, OW) with
    ``OH = (H + 2*PH - DH*(KH-1) - 1) // SH + 1``.  Computed as im2col + GEMM (see the module docstring); on
    the CPU and GPU the ``conv2d_forward`` kernels run depthwise layers (``groups == C > 1``) by the direct
    kernels of ``depthwise_conv2d``, and the CPU's thin grouped layers by those of ``grouped_conv2d``.
    """
    where = f"conv2d(weight of shape {tuple(weight.shape)}, groups={groups})"
    return _conv2d(where, input, weight, bias, stride, padding, dilation, groups)


class Conv2dBatchNormFn(Function):
    """Inference: ``act((W @ im2col(x) + b - mean) k + beta)``, the convolution's output normalised chunk by chunk
    as it is computed (``conv2d_forward``'s ``norm``).  Hyper-parameters: Conv2dFn's, and the batch norm's
    ``running_mean``, ``running_var``, ``eps`` and ``activation``.  No backward: ``conv2d_batch_norm`` runs it
    only where no graph is recorded."""

    def forward(self, x, w, b, gamma, beta):
        geometry = (*self.stride, *self.padding, *self.dilation, *self.out_size, self.groups)
        mean, _, k = eval_coefficients(self.running_mean, self.running_var, gamma, self.eps, x.dtype)
        y, _ = get_kernel("conv2d_forward", x)(x, w, b, *geometry, norm=(mean, k, beta, self.activation))
        return y


def conv2d_batch_norm(input, weight, bias, running_mean, running_var, norm_weight=None, norm_bias=None, stride=1,
                      padding=0, dilation=1, groups=1, eps=1e-5, activation=None, where="conv2d_batch_norm"):
    """``act(batch_norm(conv2d(input, weight, bias, stride, padding, dilation, groups), running_mean, running_var,
    norm_weight, norm_bias, eps=eps))`` in evaluation mode, for inference: one op, which normalises (and applies
    ``activation``: None, 'relu' or 'relu6') each chunk of the convolution's output as soon as it is computed,
    while it is in cache, instead of in two more passes over memory.  The bits of the ops in turn.  It records no
    graph, and refuses to run where one would be recorded (grad mode on and a tensor requiring a gradient).  Not
    in PyTorch's API: the zoo's blocks call it through ``nn.conv_norm_activation``."""
    tensors = (input, weight, bias, norm_weight, norm_bias)
    if is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in tensors):
        raise RuntimeError(f"{where}: inference only, it records no graph; call it under tinyconv.no_grad(), or "
                           f"call conv2d, batch_norm and the activation")
    if activation not in (None, "relu", "relu6"):
        raise ValueError(f"{where}: activation should be None, 'relu' or 'relu6', got {activation!r}")
    if input.ndim != 4:
        raise ValueError(f"{where}: expected input of shape (N, C, H, W), got {tuple(input.shape)}")
    check_operands(where, input, weight, bias)
    stride, padding, dilation, out_size = conv_geometry(where, input.shape, weight.shape, stride, padding,
                                                        dilation, groups)
    if running_mean is None or running_var is None:
        raise ValueError(f"{where}: running_mean and running_var are required (evaluation mode)")
    K = weight.shape[0]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("norm_weight", norm_weight),
                    ("norm_bias", norm_bias)):
        if t is not None and tuple(t.shape) != (K,):
            raise ValueError(f"{where}: {name} should have shape ({K},) for the {K} output channels, got "
                             f"{tuple(t.shape)}")
    return Conv2dBatchNormFn.apply(input, weight, bias, norm_weight, norm_bias, stride=stride, padding=padding,
                                   dilation=dilation, out_size=out_size, groups=groups, eps=eps, activation=activation,
                                   running_mean=_data(running_mean), running_var=_data(running_var))
