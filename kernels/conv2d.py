"""conv2d_forward / conv2d_backward: the 2-D convolution as one kernel family, with every way to compute it.

Shapes: x (N, C, H, W); w (K, C/G, KH, KW) (PyTorch's layout); b (K,) or None; y (N, K, OH, OW); stride
(SH, SW), top/left padding (PH, PW) (the output size implies the rest), dilation (DH, DW), G groups, and
R = C/G*KH*KW, the rows of one group's im2col matrix.

    conv2d_forward(x, w, b, SH, SW, PH, PW, DH, DW, OH, OW, G, *, xp, kernel, norm=None)  -> (y, col)
    conv2d_backward(gy, x, w, col, SH, SW, PH, PW, DH, DW, G, need_x, need_w, *, xp, kernel) -> (gx, gw)

``col`` is the im2col matrix (G, R, N*OH*OW) when forward kept it for backward, else None (backward then
rebuilds it from x); ``gx``/``gw`` are None when not needed.  ``norm`` (inference): ``(mean, k, beta,
activation)``, a batch norm in evaluation mode and its activation applied to y by ``batch_norm_eval``, on each
chunk of images as soon as it is computed (still in cache) on the CPU; the bits of the two kernels in turn.
These are composite kernels: they are written over other kernels (``kernel('im2col')``, ``kernel('col2im')``,
the direct depthwise and grouped kernels) and array calls (``xp.matmul``); ``tinyconv.backend`` hands them
``xp`` and ``kernel`` for the arrays' device.

- ``_numpy``, the reference: the textbook im2col -> W @ col -> col2im, the whole batch at once, for every
  layer.  It is also what runs on CuPy arrays where nothing faster is written (with CUDA im2col/col2im).
- ``_cpu``: the strategies measured fastest on the CPU (``_Conv``): depthwise (G == C > 1) and thin grouped
  layers (``DIRECT_MAX_TAPS``) by the direct kernels, and so few-channel dense layers at stride 1
  (``direct.direct_suits``); a layer whose one window is the whole image as a fully connected one (no
  im2col); the batch cut into even chunks of images (``COL_CHUNK_BYTES``, ``COL_CHUNK_MIN_COLUMNS``) that
  run on several threads for a small layer (``threads.split_work``), with BLAS on one thread (``threads.gemm``);
  pointwise layers image by image (``POINTWISE_MIN_PIXELS``); a small col kept for backward (``KEEP_COL_BYTES``).
  Every chunk is computed as it would be alone, so results do not depend on the thread count.
- ``_cuda``: the GPU's choice among them: depthwise by its direct kernel, full-window layers as fully
  connected ones, everything else as one im2col + cuBLAS product over the whole batch.
- ``_shape`` (for ``tinyconv.summary``): the multiply-accumulates and zeros of the output's shape.

The math, per group, with Y = W col and dY its gradient (K/G, N*OH*OW):

    y    = W @ im2col(x) + b
    dW   = dY @ col^T            (dL/dW[k,r] = sum_p dY[k,p] col[r,p])
    dcol = W^T @ dY              (dL/dcol[r,p] = sum_k W[k,r] dY[k,p])
    dx   = col2im(dcol)          (im2col copies each x element to several places; its adjoint adds them back)
"""
import contextlib

import numpy as np

from . import conv_dense, get, kn2row, threads, winograd_conv
from .conv_algorithms import requested, strategy


def _reference_kernel(name):
    return get(name, "numpy")


def _device(xp):
    return "cpu" if xp is np else "cuda"


# -- NumPy reference: the textbook --------------------------------------------------------------------
def conv2d_forward_numpy(x, w, b, SH, SW, PH, PW, DH, DW, OH, OW, G, *, xp=np, kernel=_reference_kernel,
                         norm=None):
    """y = W @ im2col(x) + b per group, the whole batch at once; nothing kept (backward rebuilds col).
    (An algorithm picked by hand, ``conv_algorithms``, runs its own reference instead.)"""
    if requested() not in ("auto", "im2col"):  # whole batch, no threads; the host's or the GPU's choice of kernels
        conv = _Conv(x, w, (SH, SW), (PH, PW), (DH, DW), (OH, OW), G, xp, kernel, cpu=False, device=_device(xp))
        return conv.forward(b, norm)
    N = x.shape[0]
    K, Cg, KH, KW = w.shape
    col = kernel("im2col")(xp.ascontiguousarray(x), KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)
    col = col.reshape(G, Cg * KH * KW, N * OH * OW)          # (C, KH, KW, N, OH, OW): a free reshape
    # Y[g] = W[g] @ col[g]: (G, K/G, R) @ (G, R, N*OH*OW)
    y = xp.matmul(w.reshape(G, K // G, Cg * KH * KW), col)
    y = y.reshape(K, N, OH, OW).transpose(1, 0, 2, 3)         # (N, K, OH, OW)
    if b is not None:
        y = y + b.reshape(K, 1, 1)
    return _normalized(xp.ascontiguousarray(y), norm, kernel), None


def _normalized(y, norm, kernel):
    """y with ``norm`` (batch norm in evaluation and its activation) applied in place; y itself without."""
    if norm is not None:
        y3 = y.reshape(y.shape[0], y.shape[1], -1)
        kernel("batch_norm_eval")(y3, *norm, out=y3)
    return y


def conv2d_backward_numpy(gy, x, w, col, SH, SW, PH, PW, DH, DW, G, need_x, need_w, *, xp=np,
                          kernel=_reference_kernel):
    """dW = dY @ col^T and dx = col2im(W^T @ dY), per group, the whole batch at once."""
    if requested() not in ("auto", "im2col"):
        conv = _Conv(x, w, (SH, SW), (PH, PW), (DH, DW), gy.shape[2:], G, xp, kernel, cpu=False, device=_device(xp))
        return conv.backward(gy, col, need_x, need_w)
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    OH, OW = gy.shape[2:]
    gy_g = xp.ascontiguousarray(gy.transpose(1, 0, 2, 3)).reshape(G, K // G, N * OH * OW)
    gx = gw = None
    if need_w:
        if col is None:
            col = kernel("im2col")(xp.ascontiguousarray(x), KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)
        col = col.reshape(G, Cg * KH * KW, N * OH * OW)
        gw = xp.matmul(gy_g, col.transpose(0, 2, 1)).reshape(w.shape)                 # dW = dY @ col^T
    if need_x:
        gcol = xp.matmul(w.reshape(G, K // G, Cg * KH * KW).transpose(0, 2, 1), gy_g)  # dcol = W^T @ dY
        gx = kernel("col2im")(gcol.reshape(C, KH, KW, N, OH, OW), H, W, SH, SW, PH, PW, DH, DW)
    return gx, gw


# -- shape only (tinyconv.summary) --------------------------------------------------------------------
def conv2d_forward_shape(x, w, b, SH, SW, PH, PW, DH, DW, OH, OW, G, *, xp=np, kernel=None, norm=None):
    """``(multiply-accumulates, (zeros of y's shape, None))``: N*K*OH*OW*R."""
    N, (K, Cg, KH, KW) = x.shape[0], w.shape
    return N * K * OH * OW * Cg * KH * KW, (xp.zeros((N, K, OH, OW), x.dtype), None)


# -- the fast paths -----------------------------------------------------------------------------------
# A layer's im2col matrix is built for a few images at a time, at most COL_CHUNK_BYTES (one image when that
# is larger): the matrix of a whole batch is KH*KW times the size of the input (a ResNet 3x3 layer at
# batch 8: 58 MB), and it was what set the peak memory of a training step (LeNet-5: 13 MiB against PyTorch's
# 8.4).  Chunks this size are wide enough for the GEMM and are still in cache when it reads them: ResNet's
# 3x3 layer (batch 8) ran 20-30% faster on one thread, LeNet-5's training step about as fast as in one chunk.
COL_CHUNK_BYTES = 1 << 20
# ... but chunks take enough images for COL_CHUNK_MIN_COLUMNS columns (OH*OW an image) when the batch has them, and
# the chunks are evened out (``_Conv.chunks``).  Small maps make narrow products that re-read all of W for few
# columns: resnet18's last stage at 64x64 input (512 maps of 2x2, 73 KB of col an image) ran as chunks of 14 and 2
# images, each product (512 x 4608) @ (4608 x 56 or 8), W's 9.4 MB read for 56 and 8 columns.  Measured in resnet18's
# training step (batch 16, 64x64), the convolutions timed in place, alternating in one process, medians of 9 (ms per
# step, plain 1 MiB chunks vs at least 128 / 256 / 512 / 1024 columns): all layers 157.5 vs 145.4 / 135.3 / 132.5 /
# 133.9; 512 maps at 2x2 38.6 vs 27.5 / 26.4 / 26.7 / 26.8; 256 at 4x4 27.0 vs 24.4 / 20.6 / 20.9 / 20.6; 128 at 8x8
# 25.3 vs 24.8 / 23.0 / 21.7 / 22.9.  (In another run, a 4 MiB budget instead: 174.7 vs 186.6.)  The col this adds is
# small beside the activations: the peak memory of resnet18, vgg11, googlenet and densenet121 training steps moved by
# less than 0.7 MiB.
COL_CHUNK_MIN_COLUMNS = 512
# A col this small, computed in one chunk, is kept from forward for backward instead of being rebuilt.
KEEP_COL_BYTES = 1 << 18
# A pointwise (1x1) layer runs image by image on the CPU from this many pixels an image (see ``per_image``).
# Measured, F.conv2d forward + backward (dx and dW) on one thread, batch 16, MobileNetV2's 1x1 layers at
# 64x64 input (ms, image by image against im2col + one GEMM per chunk): 32x32 16->96 4.6 vs 6.9; 16x16
# 96->24 1.35 vs 1.91, 24->144 2.02 vs 2.73; 8x8 144->32 0.79 vs 1.10, 32->192 0.76 vs 0.90; 4x4 64->384
# 0.95 vs 0.82, 384->64 1.10 vs 1.44.  At 2x2 the products alone took 2.7 against 1.1 (160->960).
POINTWISE_MIN_PIXELS = 16
# dW as the transposed product (``weight_product``) when the layer's backward has at least this many columns
# in all (N*OH*OW): dW then has to be transposed into W's layout, K*R elements, which for a large W over few
# columns costs more than the faster product saves (resnet18's 512-map layers at 2x2: 2.4 M elements).
# Whole layers, one thread, forward + backward (ms, plain vs transposed dW): resnet18's conv1 (16 images, 7x7/2,
# 3->64 at 64x64) 18.6 vs 17.1; a DenseNet 3x3 layer (128->32 at 16x16) 23.7 vs 21.4; LeNet-5's C3 (64 images)
# 4.45 vs 4.01; 64->128 3x3/2 at 16x16 8.5 vs 8.3; 128->128 at 8x8 15.6 vs 14.5.
WEIGHT_TRANSPOSED_MIN_COLUMNS = 512


def conv2d_forward_cpu(x, w, b, SH, SW, PH, PW, DH, DW, OH, OW, G, *, xp=np, kernel=_reference_kernel, norm=None):
    return _Conv(x, w, (SH, SW), (PH, PW), (DH, DW), (OH, OW), G, xp, kernel, cpu=True).forward(b, norm)


def conv2d_backward_cpu(gy, x, w, col, SH, SW, PH, PW, DH, DW, G, need_x, need_w, *, xp=np,
                        kernel=_reference_kernel):
    conv = _Conv(x, w, (SH, SW), (PH, PW), (DH, DW), gy.shape[2:], G, xp, kernel, cpu=True)
    return conv.backward(gy, col, need_x, need_w)


def conv2d_forward_cuda(x, w, b, SH, SW, PH, PW, DH, DW, OH, OW, G, *, xp, kernel, norm=None):
    return _Conv(x, w, (SH, SW), (PH, PW), (DH, DW), (OH, OW), G, xp, kernel, cpu=False).forward(b, norm)


def conv2d_backward_cuda(gy, x, w, col, SH, SW, PH, PW, DH, DW, G, need_x, need_w, *, xp, kernel):
    conv = _Conv(x, w, (SH, SW), (PH, PW), (DH, DW), gy.shape[2:], G, xp, kernel, cpu=False)
    return conv.backward(gy, col, need_x, need_w)


class _Conv:
    """One layer's geometry and the strategies of ``conv2d_forward_cpu``/``_cuda`` (the module docstring)."""

    def __init__(self, x, w, stride, padding, dilation, out_size, G, xp, kernel, cpu, device=None):
        self.x, self.w, self.xp, self.kernel, self.cpu = xp.ascontiguousarray(x), w, xp, kernel, cpu
        self.stride, self.padding, self.dilation, self.out_size, self.groups = \
            stride, padding, dilation, tuple(out_size), G
        device = device or ("cpu" if cpu else "cuda")  # whose kernels the strategy may choose
        self.how = strategy(x.shape, w.shape, G, padding, self.out_size, device, stride, dilation)
        # a small layer's products on one BLAS thread, its chunks split across threads; a large layer's
        # products use every BLAS thread, chunk after chunk (threads.py).  The GPU: one launch, no threads.
        self.gemm = threads.gemm if cpu else (lambda macs: contextlib.nullcontext())

    def forward(self, b, norm=None):
        if self.how != "gemm":
            return _normalized(self.whole(b), norm, self.kernel), None
        N, K, (OH, OW) = self.x.shape[0], self.w.shape[0], self.out_size
        y, macs = self.xp.empty((N, K, OH, OW), self.x.dtype), self.macs()
        with self.gemm(macs):  # norm is applied to each chunk as soon as it is done
            kept = self.over_chunks(lambda chunk: self.forward_chunk(*chunk, y, b, norm), macs)
        return y, kept[0] if len(kept) == 1 else None

    def whole(self, b):
        """y of the strategies that compute the whole batch at once (all but ``'gemm'``)."""
        xp, x, w = self.xp, self.x, self.w
        (SH, SW), (PH, PW), (DH, DW), (OH, OW) = self.stride, self.padding, self.dilation, self.out_size
        if self.how == "dense":
            return conv_dense.forward(x, w, b, self.groups, xp, self.gemm)
        if self.how in ("winograd", "winograd4"):  # F(2x2, 3x3) or F(4x4, 3x3)
            return winograd_conv.forward(x, w, b, PH, PW, OH, OW, xp=xp, kernel=self.kernel, cpu=self.cpu,
                                         m=4 if self.how == "winograd4" else 2)
        if self.how == "kn2row":
            with self.gemm(self.macs()):
                return kn2row.forward(x, w, b, PH, PW, OH, OW, self.run, xp=xp, kernel=self.kernel)
        if self.how == "naive":
            return self.kernel("naive_conv2d")(x, w, b, SH, SW, PH, PW, DH, DW, OH, OW, self.groups)
        if self.how == "direct":  # the bias is added by the kernel
            return self.kernel("direct_conv2d")(x, xp.ascontiguousarray(w), b, PH, PW, OH, OW)
        if self.how == "depthwise":
            y = self.kernel("depthwise_conv2d")(x, self.w_taps(), SH, SW, PH, PW, DH, DW, OH, OW)
        else:  # grouped
            y = self.kernel("grouped_conv2d")(x, xp.ascontiguousarray(w), SH, SW, PH, PW, DH, DW, OH, OW)
        if b is not None:
            y += b.reshape(w.shape[0], 1, 1)
        return y

    def backward(self, gy, col, need_x, need_w):
        xp, G = self.xp, self.groups
        gy = xp.ascontiguousarray(gy)
        N, C, H, W = self.x.shape
        K, Cg, KH, KW = self.w.shape
        (SH, SW), (PH, PW), (DH, DW) = self.stride, self.padding, self.dilation
        gx = gw = None
        if self.how == "depthwise":
            w = self.w_taps()
            if need_x and need_w:  # both at once, reading dY once
                gx, gw = self.kernel("depthwise_conv2d_backward")(self.x, gy, w, SH, SW, PH, PW, DH, DW)
            elif need_x:
                gx = self.kernel("depthwise_conv2d_grad_input")(gy, w, C, H, W, SH, SW, PH, PW, DH, DW)
            elif need_w:
                gw = self.kernel("depthwise_conv2d_grad_weight")(self.x, gy, KH, KW, SH, SW, PH, PW, DH, DW)
            return gx, None if gw is None else gw.reshape(self.w.shape)
        if self.how == "grouped":
            w = xp.ascontiguousarray(self.w)
            if need_x:
                gx = self.kernel("grouped_conv2d_grad_input")(gy, w, C, H, W, SH, SW, PH, PW, DH, DW)
            if need_w:
                gw = self.kernel("grouped_conv2d_grad_weight")(self.x, gy, G, KH, KW, SH, SW, PH, PW, DH, DW)
            return gx, gw
        if self.how == "dense":
            return conv_dense.backward(gy, self.x, self.w, G, need_x, need_w, xp, self.gemm)
        if self.how in ("winograd", "winograd4"):
            return winograd_conv.backward(gy, self.x, self.w, PH, PW, need_x, need_w, xp=xp, kernel=self.kernel,
                                          cpu=self.cpu, m=4 if self.how == "winograd4" else 2)
        if self.how == "kn2row":
            with self.gemm(self.macs()):  # as over_chunks reckons it (run)
                return kn2row.backward(gy, self.x, self.w, PH, PW, need_x, need_w, self.run, xp=xp, kernel=self.kernel)
        if self.how == "naive":
            return self.kernel("naive_conv2d_backward")(gy, self.x, self.w, SH, SW, PH, PW, DH, DW, G, need_x, need_w)
        if self.how == "direct":
            return self.direct_backward(gy, need_x, need_w)
        chunks = self.chunks()
        self.col = col
        gx = xp.empty(self.x.shape, gy.dtype) if need_x and len(chunks) > 1 else None
        R = Cg * KH * KW
        with self.gemm(R * gy.size):  # K*R*N*OH*OW multiply-adds
            parts = self.over_chunks(lambda chunk: self.backward_chunk(gy, *chunk, need_w, need_x, gx), R * gy.size)
        if need_x and gx is None:  # one chunk: its result is the whole dx
            gx = parts[0][1]
        if need_w:  # dW = sum over the chunks, in chunk order (the same sum whatever the thread count)
            gw = parts[0][0]
            for part, _ in parts[1:]:
                gw += part
            gw = gw.reshape(self.w.shape)
        return gx, gw

    def direct_backward(self, gy, need_x, need_w):
        """dx and dW of a ``'direct'`` layer by the direct kernels (kernels/direct.py)."""
        (PH, PW), (KH, KW), (H, W) = self.padding, self.w.shape[2:], self.x.shape[2:]
        w = self.xp.ascontiguousarray(self.w)
        gx = self.kernel("direct_conv2d_grad_input")(gy, w, H, W, PH, PW) if need_x else None
        gw = self.kernel("direct_conv2d_grad_weight")(self.x, gy, KH, KW, PH, PW) if need_w else None
        return gx, gw

    def w_taps(self):
        """A depthwise weight (K, 1, KH, KW) as the direct kernels take it: (K, KH, KW), contiguous."""
        return self.xp.ascontiguousarray(self.w.reshape(self.w.shape[0], *self.w.shape[2:]))

    def over_chunks(self, fn, macs):
        """``fn`` over ``self.chunks()``, on several threads for a small layer on the CPU (``split_work``)."""
        chunks = self.chunks()
        if len(chunks) > 1 and macs < threads.BLAS_PARALLEL_MIN_MACS:
            return threads.split_work(fn, chunks)
        return [fn(chunk) for chunk in chunks]

    def macs(self):
        """The forward pass's multiply-adds, N*K*OH*OW*C/G*KH*KW: the measure of the thread policy's blocks."""
        return self.x.shape[0] * self.w[0].size * self.w.shape[0] * self.out_size[0] * self.out_size[1]

    def run(self, fn):
        """``fn`` over the chunks (kn2row.py), under a ``gemm(self.macs())`` block."""
        return self.over_chunks(fn, self.macs())

    def chunks(self):
        """``(n0, n1)`` ranges of images: as many as chunks of ``images`` make, evened out, with ``images`` the
        most whose im2col matrix fits in ``COL_CHUNK_BYTES`` (at least one), or the fewest that have
        ``COL_CHUNK_MIN_COLUMNS`` columns if that is more."""
        N, C = self.x.shape[:2]
        K, Cg, KH, KW = self.w.shape
        per_image = C * KH * KW * self.out_size[0] * self.out_size[1] * self.x.dtype.itemsize
        if not self.cpu:  # on the GPU, the whole batch: fewer, larger launches
            return [(0, N)]
        columns = max(1, self.out_size[0] * self.out_size[1])  # an image's
        images = max(COL_CHUNK_BYTES // per_image, -(-COL_CHUNK_MIN_COLUMNS // columns))
        count = -(-N // max(1, min(N, images)))
        bounds = [i * (N // count) + min(i, N % count) for i in range(count + 1)]  # the first N % count one larger
        return list(zip(bounds[:-1], bounds[1:]))

    def forward_chunk(self, n0, n1, out, b, norm=None):
        """out[n0:n1] = W @ col + b for images n0..n1-1, per group, then ``norm`` on them; returns col when it
        is worth keeping."""
        xp = self.xp
        N, (K, Cg, KH, KW), G, (OH, OW) = out.shape[0], self.w.shape, self.groups, self.out_size
        w_g = self.w.reshape(G, K // G, Cg * KH * KW)
        if self.per_image(n1 - n0):
            # Y[n, g] = W[g] @ x[n, g]: (G, K/G, C/G) @ (n, G, C/G, OH*OW), written into out[n0:n1] as laid out
            xp.matmul(w_g, self.images(self.x, n0, n1), out=self.images(out, n0, n1))
            if b is not None:
                out[n0:n1] += b.reshape(K, 1, 1)
            _normalized(out[n0:n1], norm, self.kernel)
            return None
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
        _normalized(out[n0:n1], norm, self.kernel)
        return col if n1 - n0 == N and col.nbytes <= KEEP_COL_BYTES else None

    def pointwise(self):
        """1x1 kernel, stride 1, no padding: the im2col matrix of one image is the image, (C, H*W)."""
        return self.w.shape[2:] == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)

    def per_image(self, n):
        """Whether a chunk of ``n`` images runs image by image, with no im2col or col2im: pointwise layers,
        for one image, or for several on the CPU when the images have ``POINTWISE_MIN_PIXELS`` pixels or more.
        (Smaller images make thin products, better done as one GEMM over the chunk's col.)"""
        return self.pointwise() and (n == 1 or (self.out_size[0] * self.out_size[1] >= POINTWISE_MIN_PIXELS
                                                and self.cpu))

    def images(self, a, n0, n1):
        """(N, G*P, OH, OW) -> images n0..n1-1 as (n, G, P, OH*OW), a view (P: a's channels per group)."""
        return a[n0:n1].reshape(n1 - n0, self.groups, a.shape[1] // self.groups, -1)

    def im2col(self, n0, n1):
        """The windows of images n0..n1-1 as G matrices of C/G*KH*KW rows by n*OH*OW columns."""
        (SH, SW), (PH, PW), (DH, DW), (OH, OW) = self.stride, self.padding, self.dilation, self.out_size
        x, (KH, KW) = self.x[n0:n1], self.w.shape[2:]
        col = self.kernel("im2col")(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)
        return col.reshape(self.groups, -1, (n1 - n0) * OH * OW)  # (C, KH, KW, n, OH, OW): a free reshape

    def backward_chunk(self, gy, n0, n1, need_w, need_x, gx):
        """``(dW of images n0..n1-1 as (G, K/G, R), dx)``: dx written into ``gx[n0:n1]`` when given."""
        xp = self.xp
        K, G = self.w.shape[0], self.groups
        if self.per_image(n1 - n0):
            return self.backward_per_image(gy, n0, n1, need_w, need_x, gx)
        # dY in the GEMM's layout (G, K/G, n*OH*OW): a view for one image, else a copy
        gy_t = xp.ascontiguousarray(gy[n0:n1].transpose(1, 0, 2, 3)).reshape(G, K // G, -1)
        gw = part = None
        if need_w:  # dW = dY @ col^T
            col = self.col if self.col is not None else self.im2col(n0, n1)
            gw = self.weight_product(gy_t, col)
            del col
        if need_x:
            part = self.input_grad(gy_t, n0, n1, None if gx is None else gx[n0:n1])
        return gw, part

    def backward_per_image(self, gy, n0, n1, need_w, need_x, gx):
        """``backward_chunk`` of a pointwise layer, image by image (``per_image``)."""
        xp = self.xp
        gy4, x4 = self.images(gy, n0, n1), self.images(self.x, n0, n1)  # (n, G, K/G, HW), (n, G, C/G, HW)
        dw = part = None
        if need_w:  # dW[g] = sum_n dY[n, g] @ x[n, g]^T, image by image (an (n, K, C) stack could be large)
            dw = self.weight_product(gy4[0], x4[0])
            for i in range(1, n1 - n0):
                dw += self.weight_product(gy4[i], x4[i])
        if need_x:  # dx[n, g] = W[g]^T @ dY[n, g]: col2im of a 1x1 layer is the identity
            part = xp.empty((n1 - n0,) + self.x.shape[1:], gy.dtype) if gx is None else gx[n0:n1]
            w_t = self.w.reshape(self.groups, -1, self.x.shape[1] // self.groups).transpose(0, 2, 1)
            xp.matmul(w_t, gy4, out=self.images(part, 0, n1 - n0))
        return dw, part

    # dW = dY @ col^T, per group: (K/G, P) @ (P, R).  With fewer filters than rows of col (K/G < R) OpenBLAS
    # runs the transposed product (col @ dY^T)^T faster on the CPU, measured on one thread (GFLOP/s, plain
    # vs transposed; AVX-512, OpenBLAS 0.3.31): LeNet-5's C3 (16 x 150, 6400 columns) 30 vs 57; a DenseNet
    # 3x3 layer (32 x 1152, 4096) 39 vs 55; ResNet's 64 x 576 at 4096 columns 59 vs 74, at 25088 65 vs 73;
    # 256 x 2304 (1024) 82 vs 87; a 1x1 layer 64 x 256 (3136) 58 vs 77.  With more filters than rows (128 x 64,
    # 256 columns) the plain one: 68 vs 61.  dW comes back as a transposed view, summed over the chunks, then
    # copied into W's layout by the final reshape: K*R elements, which ``WEIGHT_TRANSPOSED_MIN_COLUMNS`` keeps
    # small beside the product.
    def weight_product(self, gy_t, col):
        """dW = ``gy_t @ col^T`` per group: gy_t (G, K/G, P), col (G, R, P) -> (G, K/G, R), maybe a view."""
        xp = self.xp
        N, (OH, OW) = self.x.shape[0], self.out_size
        if self.cpu and gy_t.shape[1] < col.shape[1] and N * OH * OW >= WEIGHT_TRANSPOSED_MIN_COLUMNS:
            return xp.matmul(col, gy_t.transpose(0, 2, 1)).transpose(0, 2, 1)
        return xp.matmul(gy_t, col.transpose(0, 2, 1))

    def input_grad(self, gy_t, n0, n1, out):
        """dx of images n0..n1-1 (into ``out`` if given): col2im(dcol) with dcol = W^T @ dY."""
        xp = self.xp
        N, C, H, W = self.x.shape
        K, Cg, KH, KW = self.w.shape
        G, (OH, OW), (SH, SW), (PH, PW), (DH, DW) = self.groups, self.out_size, self.stride, self.padding, self.dilation
        w_t = self.w.reshape(G, K // G, Cg * KH * KW).transpose(0, 2, 1)
        # each x element collects the gradient of all its copies in col
        gcol = xp.matmul(w_t, gy_t).reshape(C, KH, KW, n1 - n0, OH, OW)
        gx = self.kernel("col2im")(gcol, H, W, SH, SW, PH, PW, DH, DW)
        if out is None:
            return gx
        out[...] = gx
        return out
