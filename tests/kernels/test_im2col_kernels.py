"""im2col / col2im kernels: the NumPy reference against the definition, Numba and numba.cuda against it."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from tinyconv_kernels import im2col as K

# (N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, extra_OH, extra_OW): extra_* widen the output grid past the
# symmetric-padding size, as 'same' padding with an even kernel does (bottom/right padding > top/left).
GEOMETRIES = [
    (2, 3, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0),
    (2, 2, 7, 6, 3, 2, 2, 1, 1, 2, 1, 2, 0, 0),
    (1, 2, 5, 5, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1),   # 'same' with a 4x4 kernel: pads 1 top/left, 2 bottom/right
    (2, 1, 8, 9, 1, 7, 3, 2, 0, 3, 1, 1, 0, 0),
    (1, 2, 9, 5, 7, 1, 1, 1, 3, 0, 2, 1, 0, 0),
    (2, 2, 4, 4, 1, 1, 3, 3, 0, 0, 1, 1, 0, 0),
]


def _out(H, W, KH, KW, SH, SW, PH, PW, DH, DW, eh, ew):
    return (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1 + eh, (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1 + ew


def _args(g):
    N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, eh, ew = g
    OH, OW = _out(H, W, KH, KW, SH, SW, PH, PW, DH, DW, eh, ew)
    return (N, C, H, W), (KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)


def naive_im2col(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW):
    N, C, H, W = x.shape
    col = np.zeros((C, KH, KW, N, OH, OW), x.dtype)
    for c, kh, kw, n, oh, ow in np.ndindex(col.shape):
        h, w = oh * SH - PH + kh * DH, ow * SW - PW + kw * DW
        if 0 <= h < H and 0 <= w < W:
            col[c, kh, kw, n, oh, ow] = x[n, c, h, w]
    return col


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_reference_matches_definition(geometry):
    shape, args = _args(geometry)
    x = np.random.standard_normal(shape)
    np.testing.assert_array_equal(K.im2col_numpy(x, *args), naive_im2col(x, *args))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_numba_matches_reference(geometry, dtype):
    shape, args = _args(geometry)
    x = np.random.standard_normal(shape).astype(dtype)
    col = K.im2col_cpu(x, *args)
    assert col.dtype == dtype
    np.testing.assert_array_equal(col, K.im2col_numpy(x, *args))
    g = np.random.standard_normal(col.shape).astype(dtype)
    H, W = shape[2:]
    back_args = (H, W) + args[2:8]
    gx = K.col2im_cpu(g, *back_args)
    assert gx.dtype == dtype and gx.shape == shape
    np.testing.assert_allclose(gx, K.col2im_numpy(g, *back_args), rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)  # few geometries: each compiles kernels (1-2 s)
@given(N=st.integers(1, 3), C=st.integers(1, 3), window=st.sampled_from([(3, 3), (5, 5)]),
       stride=st.sampled_from([(1, 1), (2, 2)]), pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       OH=st.integers(1, 5), OW=st.sampled_from([1, 4, K.COMPILED_COL2IM_MAX_OW + 1, K.COMPILED_MAX_OW + 1]),
       rest=st.tuples(st.integers(0, 1), st.integers(0, 1)), float64=st.booleans(), strided=st.booleans())
@example(N=2, C=3, window=(3, 3), stride=(1, 1), pad=(1, 1), OH=4, OW=4, rest=(0, 0), float64=False,
         strided=False)                                                       # ResNet's 3x3 on a 4x4 map
@example(N=2, C=3, window=(3, 3), stride=(2, 2), pad=(1, 1), OH=2, OW=2, rest=(1, 1), float64=False,
         strided=True)                                                        # its 3x3/2, 4x4 -> 2x2
@example(N=3, C=2, window=(5, 5), stride=(1, 1), pad=(0, 0), OH=10, OW=10, rest=(0, 0), float64=True,
         strided=False)                                                       # LeNet-5's C3
def test_compiled_rows_match_the_reference(N, C, window, stride, pad, OH, OW, rest, float64, strided):
    """Layers with short output rows take the kernels with the window, stride and row length compiled in
    (LeNet-5's C3, ResNet's 3x3 layers on small maps); longer rows the general ones: the reference's bits
    (im2col) and the general kernel's (col2im) either way, with and without padding, contiguous or strided."""
    (KH, KW), (SH, SW), (PH, PW) = window, stride, pad
    H, W = (OH - 1) * SH + KH - 2 * PH + rest[0] % SH, (OW - 1) * SW + KW - 2 * PW + rest[1] % SW
    assume(H >= 1 and W >= 1)
    x = np.random.default_rng(OH * 31 + OW).standard_normal((N, C, H, 2 * W if strided else W))
    x = (x[..., ::2] if strided else x).astype(np.float64 if float64 else np.float32)
    args = (KH, KW, SH, SW, PH, PW, 1, 1, OH, OW)
    col = K.im2col_cpu(x, *args)
    assert col.dtype == x.dtype
    np.testing.assert_array_equal(col, K.im2col_numpy(x, *args))
    if OW <= K.COMPILED_MAX_OW:
        assert (SH, SW, OW) in K._compiled_im2col
    # col2im (rows of at most COMPILED_COL2IM_MAX_OW compiled): the general kernel's bits, the same additions
    g = np.random.default_rng(OW).standard_normal(col.shape).astype(col.dtype)
    gx = K.col2im_cpu(g, H, W, *args[2:8])
    general = np.zeros(x.shape, g.dtype)
    K._col2im_cpu(g, general, *args[2:8])
    np.testing.assert_array_equal(gx, general)
    np.testing.assert_allclose(gx, K.col2im_numpy(g, H, W, *args[2:8]), rtol=1e-5, atol=1e-5)
    assert ((KH, KW, SH, SW, OW) in K._compiled_col2im) == (OW <= K.COMPILED_COL2IM_MAX_OW)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_col2im_is_the_adjoint_of_im2col(geometry):
    # <im2col(x), g> == <x, col2im(g)> for all x, g: what makes col2im the gradient of im2col
    shape, args = _args(geometry)
    x = np.random.standard_normal(shape)
    g = np.random.standard_normal(K.im2col_numpy(x, *args).shape)
    H, W = shape[2:]
    for im2col, col2im in [(K.im2col_numpy, K.col2im_numpy), (K.im2col_cpu, K.col2im_cpu)]:
        lhs = (im2col(x, *args) * g).sum()
        rhs = (x * col2im(g, H, W, *args[2:8])).sum()
        np.testing.assert_allclose(lhs, rhs, rtol=1e-10)


@pytest.mark.parametrize("geometry", [GEOMETRIES[1], GEOMETRIES[2]])
def test_cuda_matches_reference(geometry):
    # on a machine without a GPU this runs on Numba's CUDA simulator (NumPy in, device array out)
    shape, args = _args(geometry)
    x = np.random.standard_normal(shape).astype(np.float32)
    col = K.im2col_cuda(x, *args).copy_to_host()
    np.testing.assert_array_equal(col, K.im2col_numpy(x, *args))
    H, W = shape[2:]
    gx = K.col2im_cuda(col, H, W, *args[2:8]).copy_to_host()
    np.testing.assert_allclose(gx, K.col2im_numpy(col, H, W, *args[2:8]), rtol=1e-5, atol=1e-5)


def test_importing_kernels_compiles_nothing():
    code = ("import tinyconv_kernels.im2col as a, tinyconv_kernels.depthwise_cpu as b\n"
            "import tinyconv_kernels.winograd_cpu as c, tinyconv_kernels.naive as d\n"
            "jitted = [a._im2col_cpu, a._col2im_cpu, b._forward_cpu, b._grad_input_cpu, b._grad_weight_cpu,\n"
            "          c._input_transform, c._output_transform, d._forward]\n"
            "assert all(not f.signatures for f in jitted), [f.signatures for f in jitted]\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
