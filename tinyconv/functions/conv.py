"""2-D convolution (cross-correlation, as in PyTorch) by im2col + GEMM, grouped convolution included.

Shapes: input x (N, C, H, W); weight (K, C/G, KH, KW) (PyTorch's layout); bias (K,); output (N, K, OH, OW);
stride (SH, SW), zero padding (PH, PW) on the top/left, dilation (DH, DW), G groups.

    y[n, k, oh, ow] = b[k] + sum over c in k's group, kh, kw of
                      W[k, c, kh, kw] * x[n, c, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]

    OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1        (the same for OW)

How it is computed.  ``im2col`` (kernels/im2col.py) unfolds every window into a column:
``col[c, kh, kw, n, oh, ow]``, which is, without any copy, a matrix of shape (C*KH*KW, N*OH*OW).  The
weight reshaped (also free) to (K, C*KH*KW) multiplies it: ``Y = W @ col`` of shape (K, N*OH*OW).  With G
groups the same reshapes give a stack of G GEMMs, done by one batched ``matmul``: (G, K/G, C/G*KH*KW) @
(G, C/G*KH*KW, N*OH*OW).  Putting the channel axis first in col is what lets col and W meet with no
transpose; the price is one copy of the *output* (K, N, OH, OW) -> (N, K, OH, OW), done together with the
bias add, and one of the output gradient in backward: arrays KH*KW*C/K times smaller than col.

A layer whose single window is the whole unpadded image (OH = OW = 1 with KH = H, KW = W: LeNet-5's C5,
a classifier written as a convolution) is a fully connected layer: col is x itself seen as (N, C*KH*KW), so
it runs as ``Y = x2 @ W^T`` with no im2col and no col2im (``full_window``; dx = dY @ W).

col is KH*KW times larger than x, so it is built for a few images at a time (``COL_CHUNK_BYTES``): the
batch is cut into chunks of images, each with its own im2col and GEMMs.  A chunk of one image needs no
transpose at all (Y is then out[n] as laid out), and for a 1x1 convolution with stride 1 and no padding
its col is the image itself.  Backward rebuilds col from x chunk by chunk, unless it was small enough to
keep (``KEEP_COL_BYTES``).

Backward, per group and chunk, writing Y = W col with dY its gradient (K, N*OH*OW):

    dW   = dY @ col^T            (dL/dW[k,r] = sum_p dY[k,p] col[r,p]; summed over the chunks)
    dcol = W^T @ dY              (dL/dcol[r,p] = sum_k W[k,r] dY[k,p])
    dx   = col2im(dcol)          (im2col copies each x element to several places; its adjoint adds them back)
    db   = sum of dY over N, OH, OW

Depthwise convolution (``groups == C > 1``) is dispatched to a direct kernel (``depthwise.py``).
"""

import numpy as np

from .. import backend, threads
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
    """im2col + (batched) GEMM, a few images at a time; hyper-parameters ``stride, padding, dilation,
    out_size, groups`` (pairs)."""

    def forward(self, x, w, b):
        xp = get_array_module(x)
        N, C, H, W = x.shape
        K, Cg, KH, KW = w.shape
        OH, OW = self.out_size
        if backend.is_shape_only():  # tinyconv.summary: count the multiply-accumulates, skip the arithmetic
            backend.count_macs(N * K * OH * OW * Cg * KH * KW)
            return xp.zeros((N, K, OH, OW), x.dtype)
        # backward rebuilds col from x (kept alive by the graph anyway) unless col is tiny: see KEEP_COL_BYTES
        self.x, self.w, self.has_bias, self.col = xp.ascontiguousarray(x), w, b is not None, None
        if self.full_window():
            return self.dense(b)
        out = xp.empty((N, K, OH, OW), x.dtype)
        macs = N * K * OH * OW * Cg * KH * KW
        # a small layer's products on one BLAS thread, its chunks split across threads; a large layer's
        # products use every BLAS thread, chunk after chunk (threads.py)
        with gemm(macs):
            self.over_chunks(lambda chunk: self.forward_chunk(*chunk, out, b), macs)
        return out

    def over_chunks(self, fn, macs):
        """``fn`` over ``self.chunks()``, on several threads for a small layer on the CPU (``split_work``)."""
        chunks = self.chunks()
        if len(chunks) > 1 and macs < threads.BLAS_PARALLEL_MIN_MACS:
            return threads.split_work(fn, chunks)
        return [fn(chunk) for chunk in chunks]

    def forward_chunk(self, n0, n1, out, b):
        """out[n0:n1] = W @ col + b for images n0..n1-1, per group."""
        xp = get_array_module(out)
        N, (K, Cg, KH, KW), G, (OH, OW) = out.shape[0], self.w.shape, self.groups, self.out_size
        w_g = self.w.reshape(G, K // G, Cg * KH * KW)
        if self.per_image(n1 - n0):
            # Y[n, g] = W[g] @ x[n, g]: (G, K/G, C/G) @ (n, G, C/G, OH*OW), written into out[n0:n1] as laid out
            xp.matmul(w_g, self.images(self.x, n0, n1), out=self.images(out, n0, n1))
            if b is not None:
                out[n0:n1] += b.reshape(K, 1, 1)
            return
        col = self.im2col(n0, n1)
        # Y[g] = W[g] @ col[g]: (G, K/G, C/G*KH*KW) @ (G, C/G*KH*KW, n*OH*OW) -> (K, n, OH, OW)
        if n1 - n0 == 1:  # one image: Y is out[n] as it is laid out, (K, OH*OW)
            xp.matmul(w_g, col, out=out[n0].reshape(G, K // G, OH * OW))
            if b is not None:
                out[n0] += b.reshape(K, 1, 1)
        else:  # (K, n, OH, OW) -> (n, K, OH, OW): a copy, with the bias added on the way
            y = xp.matmul(w_g, col).reshape(K, n1 - n0, OH, OW).transpose(1, 0, 2, 3)
            if b is None:
                out[n0:n1] = y
            else:
                xp.add(y, b.reshape(K, 1, 1), out=out[n0:n1])
        if n1 - n0 == N and col.nbytes <= KEEP_COL_BYTES:
            self.col = col

    def chunks(self):
        """``(n0, n1)`` ranges of images whose im2col matrix fits in ``COL_CHUNK_BYTES`` (at least one image)."""
        N, C = self.x.shape[:2]
        K, Cg, KH, KW = self.w.shape
        per_image = C * KH * KW * self.out_size[0] * self.out_size[1] * self.x.dtype.itemsize
        if get_array_module(self.x) is not np:  # on the GPU, the whole batch: fewer, larger launches
            return [(0, N)]
        step = max(1, min(N, COL_CHUNK_BYTES // per_image))
        return [(n0, min(N, n0 + step)) for n0 in range(0, N, step)]

    def full_window(self):
        """One window covering the whole unpadded image: the layer is a fully connected one."""
        return self.out_size == (1, 1) and self.padding == (0, 0) and self.w.shape[2:] == self.x.shape[2:]

    def groups_view(self, a, per_group):
        """(N, G*per_group, ...) -> (G, N, per_group): a view, the images as rows of each group's matrix."""
        return a.reshape(a.shape[0], self.groups, per_group).transpose(1, 0, 2)

    def dense(self, b):
        """Forward of a full-window layer, per group: Y = x2 @ W^T with x2 (N, C/G*KH*KW), W (K/G, C/G*KH*KW)."""
        xp = get_array_module(self.x)
        N, (K, Cg, KH, KW), G = self.x.shape[0], self.w.shape, self.groups
        w_g = self.w.reshape(G, K // G, Cg * KH * KW)
        with gemm(N * K * Cg * KH * KW):
            y = xp.matmul(self.groups_view(self.x, Cg * KH * KW), w_g.transpose(0, 2, 1))  # (G, N, K/G)
        out = xp.empty((N, K, 1, 1), self.x.dtype)
        out.reshape(N, G, K // G)[...] = y.transpose(1, 0, 2)
        if b is not None:
            out += b.reshape(K, 1, 1)
        return out

    def dense_backward(self, gy, need_x, need_w):
        """Backward of a full-window layer: dW = dY^T @ x2 and dx = dY @ W, per group (dY as (N, K/G))."""
        xp = get_array_module(gy)
        N, (K, Cg, KH, KW), G = self.x.shape[0], self.w.shape, self.groups
        gy_g = self.groups_view(gy, K // G)                          # (G, N, K/G)
        gw = gx = None
        with gemm(N * K * Cg * KH * KW):
            if need_w:  # dW[k, r] = sum_n dY[n, k] x2[n, r]
                gw = xp.matmul(gy_g.transpose(0, 2, 1), self.groups_view(self.x, Cg * KH * KW))
                gw = gw.reshape(self.w.shape)
            if need_x:  # dx2[n, r] = sum_k dY[n, k] W[k, r]
                gx_g = xp.matmul(gy_g, self.w.reshape(G, K // G, Cg * KH * KW))  # (G, N, C/G*KH*KW)
                gx = gx_g.reshape(self.x.shape) if G == 1 else \
                    xp.ascontiguousarray(gx_g.transpose(1, 0, 2)).reshape(self.x.shape)
        return gx, gw

    def pointwise(self):
        """1x1 kernel, stride 1, no padding: the im2col matrix of one image is the image, (C, H*W)."""
        return self.w.shape[2:] == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)

    def per_image(self, n):
        """Whether a chunk of ``n`` images runs image by image, with no im2col or col2im: pointwise layers,
        for one image, or for several on the CPU when the images have ``POINTWISE_MIN_PIXELS`` pixels or more.
        (Smaller images make thin products, better done as one GEMM over the chunk's col.)"""
        return self.pointwise() and (n == 1 or (self.out_size[0] * self.out_size[1] >= POINTWISE_MIN_PIXELS
                                                and get_array_module(self.x) is np))

    def images(self, a, n0, n1):
        """(N, G*P, OH, OW) -> images n0..n1-1 as (n, G, P, OH*OW), a view (P: a's channels per group)."""
        return a[n0:n1].reshape(n1 - n0, self.groups, a.shape[1] // self.groups, -1)

    def im2col(self, n0, n1):
        """The windows of images n0..n1-1 as G matrices of C/G*KH*KW rows by n*OH*OW columns."""
        (SH, SW), (PH, PW), (DH, DW), (OH, OW) = self.stride, self.padding, self.dilation, self.out_size
        x, (KH, KW) = self.x[n0:n1], self.w.shape[2:]
        col = get_kernel("im2col", x)(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)
        return col.reshape(self.groups, -1, (n1 - n0) * OH * OW)  # (C, KH, KW, n, OH, OW): a free reshape

    def backward(self, gy):
        xp = get_array_module(gy)
        K, Cg, KH, KW = self.w.shape
        R = Cg * KH * KW  # rows of col per group
        need_x, need_w, need_b = self.needs_input_grad
        gy = xp.ascontiguousarray(gy)
        # db = sum of dY over N, OH, OW
        gb = gy.sum(axis=(0, 2, 3)) if self.has_bias and need_b else None
        if self.full_window():
            return self.dense_backward(gy, need_x, need_w) + (gb,)
        chunks = self.chunks()
        gx = xp.empty(self.x.shape, gy.dtype) if need_x and len(chunks) > 1 else None
        with gemm(R * gy.size):  # K*R*N*OH*OW multiply-adds: a small layer on one BLAS thread (threads.py)
            parts = self.over_chunks(lambda chunk: self.backward_chunk(gy, *chunk, need_w, need_x, gx),
                                     R * gy.size)
        if need_x and gx is None:  # one chunk: its result is the whole dx
            gx = parts[0][1]
        gw = None
        if need_w:  # dW = sum over the chunks, in chunk order (the same sum whatever the thread count)
            gw = parts[0][0]
            for part, _ in parts[1:]:
                gw += part
            gw = gw.reshape(self.w.shape)  # a plain array for the optimiser
        return gx, gw, gb

    def backward_chunk(self, gy, n0, n1, need_w, need_x, gx):
        """``(dW of images n0..n1-1 as (G, K/G, R), dx)``: dx written into ``gx[n0:n1]`` when given."""
        xp = get_array_module(gy)
        K, G = self.w.shape[0], self.groups
        if self.per_image(n1 - n0):
            return self.backward_per_image(gy, n0, n1, need_w, need_x, gx)
        # dY in the GEMM's layout (G, K/G, n*OH*OW): a view for one image, else a copy
        gy_t = xp.ascontiguousarray(gy[n0:n1].transpose(1, 0, 2, 3)).reshape(G, K // G, -1)
        gw = part = None
        if need_w:
            # dW = dY @ col^T, in dW's own layout: as fast as the transposed product (col @ dY^T)^T on
            # ResNet's layers, and no transposing copy of dW afterwards
            col = self.col if self.col is not None else self.im2col(n0, n1)
            gw = xp.matmul(gy_t, col.transpose(0, 2, 1))
            del col
        if need_x:
            part = self.input_grad(gy_t, n0, n1, None if gx is None else gx[n0:n1])
        return gw, part

    def backward_per_image(self, gy, n0, n1, need_w, need_x, gx):
        """``backward_chunk`` of a pointwise layer, image by image (``per_image``)."""
        xp = get_array_module(gy)
        gy4, x4 = self.images(gy, n0, n1), self.images(self.x, n0, n1)  # (n, G, K/G, HW), (n, G, C/G, HW)
        dw = part = None
        if need_w:  # dW[g] = sum_n dY[n, g] @ x[n, g]^T, image by image (an (n, K, C) stack could be large)
            dw = xp.matmul(gy4[0], x4[0].transpose(0, 2, 1))
            for i in range(1, n1 - n0):
                dw += xp.matmul(gy4[i], x4[i].transpose(0, 2, 1))
        if need_x:  # dx[n, g] = W[g]^T @ dY[n, g]: col2im of a 1x1 layer is the identity
            part = xp.empty((n1 - n0,) + self.x.shape[1:], gy.dtype) if gx is None else gx[n0:n1]
            w_t = self.w.reshape(self.groups, -1, self.x.shape[1] // self.groups).transpose(0, 2, 1)
            xp.matmul(w_t, gy4, out=self.images(part, 0, n1 - n0))
        return dw, part

    def input_grad(self, gy_t, n0, n1, out):
        """dx of images n0..n1-1 (into ``out`` if given): col2im(dcol) with dcol = W^T @ dY."""
        xp = get_array_module(gy_t)
        N, C, H, W = self.x.shape
        K, Cg, KH, KW = self.w.shape
        G, (OH, OW), (SH, SW), (PH, PW), (DH, DW) = self.groups, self.out_size, self.stride, self.padding, self.dilation
        w_t = self.w.reshape(G, K // G, Cg * KH * KW).transpose(0, 2, 1)
        # each x element collects the gradient of all its copies in col
        gcol = xp.matmul(w_t, gy_t).reshape(C, KH, KW, n1 - n0, OH, OW)
        gx = get_kernel("col2im", gcol)(gcol, H, W, SH, SW, PH, PW, DH, DW)
        if out is None:
            return gx
        out[...] = gx
        return out


# A layer's im2col matrix is built for a few images at a time, at most COL_CHUNK_BYTES (one image when that
# is larger): the matrix of a whole batch is KH*KW times the size of the input (a ResNet 3x3 layer at
# batch 8: 58 MB), and it was what set the peak memory of a training step (LeNet-5: 13 MiB against PyTorch's
# 8.4).  Chunks this size are wide enough for the GEMM and are still in cache when it reads them: ResNet's
# 3x3 layer (batch 8) ran 20-30% faster on one thread, LeNet-5's training step about as fast as in one chunk.
COL_CHUNK_BYTES = 1 << 20
# A col this small, computed in one chunk, is kept from forward for backward instead of being rebuilt.
KEEP_COL_BYTES = 1 << 18
# A pointwise (1x1) layer runs image by image on the CPU from this many pixels an image (see ``per_image``).
# Measured, F.conv2d forward + backward (dx and dW) on one thread, batch 16, MobileNetV2's 1x1 layers at
# 64x64 input (ms, image by image against im2col + one GEMM per chunk): 32x32 16->96 4.6 vs 6.9; 16x16
# 96->24 1.35 vs 1.91, 24->144 2.02 vs 2.73; 8x8 144->32 0.79 vs 1.10, 32->192 0.76 vs 0.90; 4x4 64->384
# 0.95 vs 0.82, 384->64 1.10 vs 1.44.  At 2x2 the products alone took 2.7 against 1.1 (160->960).
POINTWISE_MIN_PIXELS = 16


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
