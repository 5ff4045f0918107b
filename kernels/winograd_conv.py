"""A 3x3, stride-1, ungrouped convolution by Winograd's F(m x m, 3x3), m = 2 (``winograd.py``, Numba:
``winograd_cpu.py``) or m = 4 (``winograd4.py``, ``winograd4_cpu.py``): forward and both gradients over the tile
transforms, the (m + 2)^2 = E element-wise products (16 or 36) done as batched matrix products (BLAS).

    forward:  U = G w G^T (E, K, C);  per chunk of images: V = B^T x B (E, C, T);  M = U @ V;  y = A^T M A
    backward: dM = A dY A^T;  dU = sum over chunks of dM @ V^T;  dw = G^T dU G;  dV = U^T @ dM;  dx = B dV B^T

``SCHEMES[m]`` names each one's tile count, filter transforms and kernel names.  Images go through in chunks
whose V is at most ``CHUNK_BYTES`` (at least one image): V and M are E/m^2 times the input's and output's size
(4x for m = 2, 2.25x for m = 4), so a whole batch's would set the training step's peak memory.  The chunks are
fixed by the layer's shape, and dU adds them up in chunk order, so the result does not depend on the thread
count; a small layer's chunks run on the helper threads (``threads.split_work``), a large layer's products
use every BLAS thread (``threads.gemm``).
"""
from collections import namedtuple

from . import threads
from .winograd import tiles, winograd_filter_transform, winograd_filter_transform_adjoint
from .winograd4 import tiles4, winograd4_filter_transform, winograd4_filter_transform_adjoint

CHUNK_BYTES = 4 << 20

# E: positions of a transformed tile; prefix: the tile-transform kernels' names, ``<prefix>_input_transform`` etc.
Scheme = namedtuple("Scheme", "E tiles filter_transform filter_transform_adjoint prefix")
SCHEMES = {2: Scheme(16, tiles, winograd_filter_transform, winograd_filter_transform_adjoint, "winograd"),
           4: Scheme(36, tiles4, winograd4_filter_transform, winograd4_filter_transform_adjoint, "winograd4")}


def applies(w_shape, G, stride, dilation):
    """Whether Winograd (F(2x2, 3x3) or F(4x4, 3x3)) computes this layer: 3x3 kernel, stride 1, dilation 1,
    no groups."""
    return tuple(w_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and G == 1


def _chunks(E, N, C, TH, TW, itemsize):
    per_image = E * C * TH * TW * itemsize
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


def forward(x, w, b, PH, PW, OH, OW, *, xp, kernel, cpu, m=2):
    N, C, H, W = x.shape
    K = w.shape[0]
    sc = SCHEMES[m]
    TH, TW = sc.tiles(OH, OW)
    U = sc.filter_transform(w, xp)
    chunks = _chunks(sc.E, N, C, TH, TW, x.dtype.itemsize)
    y = None if len(chunks) == 1 else xp.empty((N, K, OH, OW), x.dtype)

    def chunk(n):
        n0, n1 = n
        V = kernel(sc.prefix + "_input_transform")(x[n0:n1], PH, PW, TH, TW)   # B^T d B: (E, C, T)
        M = xp.matmul(U, V)                                                     # (E, K, C) @ (E, C, T)
        out = kernel(sc.prefix + "_output_transform")(M, n1 - n0, OH, OW)       # A^T M A: (n, K, OH, OW)
        if y is None:
            return out
        y[n0:n1] = out
    parts = _run(chunks, chunk, sc.E * K * C * N * TH * TW, cpu)
    y = parts[0] if y is None else y
    if b is not None:
        y += b.reshape(K, 1, 1)
    return y


def backward(gy, x, w, PH, PW, need_x, need_w, *, xp, kernel, cpu, m=2):
    N, C, H, W = x.shape
    K = w.shape[0]
    OH, OW = gy.shape[2:]
    sc = SCHEMES[m]
    TH, TW = sc.tiles(OH, OW)
    U = sc.filter_transform(w, xp)
    chunks = _chunks(sc.E, N, C, TH, TW, x.dtype.itemsize)
    gx = xp.empty(x.shape, gy.dtype) if need_x and len(chunks) > 1 else None

    def chunk(n):
        n0, n1 = n
        dM = kernel(sc.prefix + "_output_transform_adjoint")(gy[n0:n1], TH, TW)   # A dY A^T: (E, K, T)
        dU = dx = None
        if need_w:  # dU[e] = dM[e] @ V[e]^T over this chunk's tiles
            V = kernel(sc.prefix + "_input_transform")(x[n0:n1], PH, PW, TH, TW)
            dU = xp.matmul(dM, V.transpose(0, 2, 1))
            del V
        if need_x:  # dV[e] = U[e]^T @ dM[e], then B dV B^T added back into the tiles' places
            dV = xp.matmul(U.transpose(0, 2, 1), dM)
            dx = kernel(sc.prefix + "_input_transform_adjoint")(dV, n1 - n0, H, W, PH, PW, TH, TW)
            if gx is not None:  # several chunks: copied into place, not kept (the parts would double dx)
                gx[n0:n1] = dx
                dx = None
        return dU, dx
    parts = _run(chunks, chunk, sc.E * K * C * N * TH * TW * (need_x + need_w), cpu)
    gw = None
    if need_w:  # dU summed in chunk order: the same bits whatever the thread count
        dU = parts[0][0]
        for part, _ in parts[1:]:
            dU += part
        gw = sc.filter_transform_adjoint(dU, xp).astype(w.dtype, copy=False)
    if need_x and gx is None:
        gx = parts[0][1]
    return gx, gw
