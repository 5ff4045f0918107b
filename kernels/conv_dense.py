"""A convolution whose one window covers the whole unpadded image (``conv_algorithms.strategy``'s ``'dense'``,
a classifier's "convolution" over the last feature map): a fully connected layer per group, no im2col.

Per group, x2 is x as (N, C/G*KH*KW) rows (a view), W the group's (K/G, C/G*KH*KW) filters, dY the output
gradient as (N, K/G):

    y   = x2 @ W^T + b        (N, K/G), laid out as (N, K, 1, 1)
    dW  = dY^T @ x2           (dL/dW[k, r] = sum_n dY[n, k] x2[n, r])
    dx2 = dY @ W              (dL/dx2[n, r] = sum_k dY[n, k] W[k, r])

``gemm(macs)``: the BLAS thread policy's block for the products (``threads.gemm``, or a null one on the GPU).
"""


def _groups_view(a, G, per_group):
    """(N, G*per_group, ...) -> (G, N, per_group): a view, the images as rows of each group's matrix."""
    return a.reshape(a.shape[0], G, per_group).transpose(1, 0, 2)


def forward(x, w, b, G, xp, gemm):
    N, (K, Cg, KH, KW) = x.shape[0], w.shape
    R = Cg * KH * KW
    with gemm(N * K * R):
        y = xp.matmul(_groups_view(x, G, R), w.reshape(G, K // G, R).transpose(0, 2, 1))  # (G, N, K/G)
    out = xp.empty((N, K, 1, 1), x.dtype)
    out.reshape(N, G, K // G)[...] = y.transpose(1, 0, 2)
    if b is not None:
        out += b.reshape(K, 1, 1)
    return out


def backward(gy, x, w, G, need_x, need_w, xp, gemm):
    """``(dx, dW)``, each None when not needed."""
    N, (K, Cg, KH, KW) = x.shape[0], w.shape
    R = Cg * KH * KW
    gy_g = _groups_view(gy, G, K // G)                          # (G, N, K/G)
    gw = gx = None
    with gemm(N * K * R):
        if need_w:
            gw = xp.matmul(gy_g.transpose(0, 2, 1), _groups_view(x, G, R)).reshape(w.shape)
        if need_x:
            gx_g = xp.matmul(gy_g, w.reshape(G, K // G, R))      # (G, N, R)
            gx = gx_g.reshape(x.shape) if G == 1 else xp.ascontiguousarray(gx_g.transpose(1, 0, 2)).reshape(x.shape)
    return gx, gw
