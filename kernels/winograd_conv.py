"""A 3x3, stride-1, ungrouped convolution by Winograd's F(2x2, 3x3): forward and both gradients over the tile
transforms of ``winograd.py`` (Numba: ``winograd_cpu.py``), the 16 element-wise products done as batched matrix
products (BLAS).

    forward:  U = G w G^T (16, K, C);  per chunk of images: V = B^T x B (16, C, T);  M = U @ V;  y = A^T M A
    backward: dM = A dY A^T;  dU = sum over chunks of dM @ V^T;  dw = G^T dU G;  dV = U^T @ dM;  dx = B dV B^T

Images go through in chunks whose V is at most ``CHUNK_BYTES`` (at least one image): V and M are 16/9 of
the input's and output's size, so a whole batch's would set the training step's peak memory.  The chunks are
fixed by the layer's shape, and dU adds them up in chunk order, so the result does not depend on the thread
count; a small layer's chunks run on the helper threads (``threads.split_work``), a large layer's products
use every BLAS thread (``threads.gemm``).
"""
from . import threads
from .winograd import tiles, winograd_filter_transform, winograd_filter_transform_adjoint

CHUNK_BYTES = 4 << 20


def applies(w_shape, G, stride, dilation):
    """Whether Winograd F(2x2, 3x3) computes this layer: 3x3 kernel, stride 1, dilation 1, no groups."""
    return tuple(w_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and G == 1


def _chunks(N, C, TH, TW, itemsize):
    per_image = 16 * C * TH * TW * itemsize
    step = max(1, min(N, CHUNK_BYTES // per_image))
    return [(n0, min(N, n0 + step)) for n0 in range(0, N, step)]


def _run(chunks, fn, macs, cpu):
    """``fn`` over the chunks: on the CPU's helper threads for a small layer, else one after another (a large
    layer's products use every BLAS thread; a GPU's one stream)."""
    if not cpu:
        return [fn(chunk) for chunk in chunks]
    with threads.gemm(macs):
        if len(chunks) > 1 and macs < threads.BLAS_PARALLEL_MIN_MACS:
            return threads.split_work(fn, chunks)
        return [fn(chunk) for chunk in chunks]


def forward(x, w, b, PH, PW, OH, OW, *, xp, kernel, cpu):
    N, C, H, W = x.shape
    K = w.shape[0]
    TH, TW = tiles(OH, OW)
    U = winograd_filter_transform(w, xp)
    chunks = _chunks(N, C, TH, TW, x.dtype.itemsize)
    y = None if len(chunks) == 1 else xp.empty((N, K, OH, OW), x.dtype)

    def chunk(n):
        n0, n1 = n
        V = kernel("winograd_input_transform")(x[n0:n1], PH, PW, TH, TW)   # B^T d B: (16, C, T)
        M = xp.matmul(U, V)                                                 # (16, K, C) @ (16, C, T)
        out = kernel("winograd_output_transform")(M, n1 - n0, OH, OW)       # A^T M A: (n, K, OH, OW)
        if y is None:
            return out
        y[n0:n1] = out
    parts = _run(chunks, chunk, 16 * K * C * N * TH * TW, cpu)
    y = parts[0] if y is None else y
    if b is not None:
        y += b.reshape(K, 1, 1)
    return y


def backward(gy, x, w, PH, PW, need_x, need_w, *, xp, kernel, cpu):
    N, C, H, W = x.shape
    K = w.shape[0]
    OH, OW = gy.shape[2:]
    TH, TW = tiles(OH, OW)
    U = winograd_filter_transform(w, xp)
    chunks = _chunks(N, C, TH, TW, x.dtype.itemsize)
    gx = xp.empty(x.shape, gy.dtype) if need_x and len(chunks) > 1 else None

    def chunk(n):
        n0, n1 = n
        dM = kernel("winograd_output_transform_adjoint")(gy[n0:n1], TH, TW)   # A dY A^T: (16, K, T)
        dU = dx = None
        if need_w:  # dU[e] = dM[e] @ V[e]^T over this chunk's tiles
            V = kernel("winograd_input_transform")(x[n0:n1], PH, PW, TH, TW)
            dU = xp.matmul(dM, V.transpose(0, 2, 1))
            del V
        if need_x:  # dV[e] = U[e]^T @ dM[e], then B dV B^T added back into the tiles' places
            dV = xp.matmul(U.transpose(0, 2, 1), dM)
            dx = kernel("winograd_input_transform_adjoint")(dV, n1 - n0, H, W, PH, PW, TH, TW)
            if gx is not None:  # several chunks: copied into place, not kept (the parts would double dx)
                gx[n0:n1] = dx
                dx = None
        return dU, dx
    parts = _run(chunks, chunk, 16 * K * C * N * TH * TW * (need_x + need_w), cpu)
    gw = None
    if need_w:  # dU summed in chunk order: the same bits whatever the thread count
        dU = parts[0][0]
        for part, _ in parts[1:]:
            dU += part
        gw = winograd_filter_transform_adjoint(dU, xp).astype(w.dtype, copy=False)
    if need_x and gx is None:
        gx = parts[0][1]
    return gx, gw
