"""A stride-1 ungrouped convolution with fewer output maps than input maps (DenseNet's 3x3 layers, 128 -> 32),
computed on the side of the output: its im2col matrices have K*KH*KW rows instead of C*KH*KW.

im2col + GEMM copies the input KH*KW times (C*KH*KW rows) and, in backward, adds as large a column gradient
back with col2im.  When K < C the same products can run over matrices of K*KH*KW rows: multiply first, then
shift and add (forward), or shift first, then multiply (backward).  With ``Wf`` the filters flipped in both
spatial axes, ``Wf[k, c, i, j] = W[k, c, KH-1-i, KW-1-j]``, and the flipped padding ``P' = (KH-1-PH, KW-1-PW)``:

    forward:  Z = Wf as (K*KH*KW, C) @ x as (C, n*H*W);  y = col2im(Z) over an OH x OW grid, padding P'
              (y[k, oh, ow] = sum_{i,j} Z[k, i, j, oh - P'h + i, ow - P'w + j]
                            = sum_{c,kh,kw} W[k, c, kh, kw] x[c, oh - PH + kh, ow - PW + kw], kh = KH-1-i)
    backward: D = im2col(dY) over an H x W grid, padding P' (K*KH*KW rows, n*H*W columns)
              dx = Wf as (C, K*KH*KW) @ D       (dx[c, h, w] = sum_{k,kh,kw} W[k, c, kh, kw] dY[k, h+PH-kh, w+PW-kw])
              dWf as (C, K*KH*KW) = x as (C, n*H*W) @ D^T, summed over the chunks, then flipped back into dW
              (dW[k, c, kh, kw] = sum_{n,oh,ow} dY[k, oh, ow] x[c, oh - PH + kh, ow - PW + kw])

So forward moves K*KH*KW rows through col2im instead of C*KH*KW through im2col, and backward builds one
K*KH*KW-row matrix for both gradients instead of im2col's C*KH*KW rows and col2im's as many.  It needs stride 1,
dilation 1, one group and padding at most KH-1, KW-1 (``applies``).  The products are as many multiply-adds as
im2col + GEMM's; the result is the same sum in another order (float32: rounding differs, not the math).

Images go through in the chunks the caller gives (``conv2d._Conv.chunks``): x and dx change between (n, C, H*W)
and (C, n*H*W) once a chunk (a view for one image).  dW adds the chunks up in their order, and the chunks are
fixed by the layer's shape, so the result does not depend on the thread count; ``run(fn, chunks)`` runs them
(``conv2d._Conv.over_chunks``: the helper threads for a small layer), under the BLAS thread policy ``gemm``.
These are composite kernels over ``kernel('im2col')``, ``kernel('col2im')`` and ``xp.matmul``: under
``TINYCONV_KERNELS=numpy`` they run the NumPy references of im2col and col2im.
"""


def applies(x_shape, w_shape, G, stride, dilation, padding):
    """Whether this computes the layer: stride 1, dilation 1, no groups, padding at most KH-1, KW-1."""
    KH, KW = w_shape[2:]
    return (G == 1 and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and 0 <= padding[0] <= KH - 1 and 0 <= padding[1] <= KW - 1)


def _flipped(w, xp):
    """Wf (K, C, KH, KW) -> its rows for the forward product: (K*KH*KW, C), taps flipped, contiguous."""
    K, C, KH, KW = w.shape
    return xp.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 2, 3, 1)).reshape(K * KH * KW, C)


def _columns(a, n0, n1, xp):
    """Images n0..n1-1 of a (N, C, H, W) as (C, n*H*W): a view for one image, else a copy."""
    N, C = a.shape[:2]
    if n1 - n0 == 1:
        return a[n0].reshape(C, -1)
    return xp.ascontiguousarray(a[n0:n1].reshape(n1 - n0, C, -1).transpose(1, 0, 2)).reshape(C, -1)


def forward(x, w, b, PH, PW, OH, OW, run, *, xp, kernel):
    N, C, H, W = x.shape
    K, _, KH, KW = w.shape
    wf = _flipped(w, xp)
    y = xp.empty((N, K, OH, OW), x.dtype)

    def chunk(n):
        n0, n1 = n
        z = xp.matmul(wf, _columns(x, n0, n1, xp))                         # (K*KH*KW, C) @ (C, n*H*W)
        y[n0:n1] = kernel("col2im")(z.reshape(K, KH, KW, n1 - n0, H, W), OH, OW, 1, 1, KH - 1 - PH, KW - 1 - PW,
                                    1, 1)
    run(chunk)
    if b is not None:
        y += b.reshape(K, 1, 1)
    return y


def backward(gy, x, w, PH, PW, need_x, need_w, run, *, xp, kernel):
    N, C, H, W = x.shape
    K, _, KH, KW = w.shape
    wt = _flipped(w, xp).T                                                # (C, K*KH*KW), a view
    gx = xp.empty(x.shape, gy.dtype) if need_x else None

    def chunk(n):
        n0, n1 = n
        d = kernel("im2col")(gy[n0:n1], KH, KW, 1, 1, KH - 1 - PH, KW - 1 - PW, 1, 1, H, W)
        d = d.reshape(K * KH * KW, (n1 - n0) * H * W)                      # (K, KH, KW, n, H, W): a free reshape
        dwf = None
        if need_w:                                                        # dWf = x @ D^T: (C, K*KH*KW)
            dwf = xp.matmul(_columns(x, n0, n1, xp), d.T)
        if need_x:                                                        # dx = Wf^T @ D: (C, n*H*W)
            dx = xp.matmul(wt, d).reshape(C, n1 - n0, H, W)
            gx[n0:n1] = dx.transpose(1, 0, 2, 3)
        return dwf
    parts = run(chunk)
    gw = None
    if need_w:  # summed in chunk order: the same bits whatever the thread count
        dwf = parts[0]
        for part in parts[1:]:
            dwf += part
        gw = xp.ascontiguousarray(dwf.reshape(C, K, KH, KW).transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    return gx, gw
