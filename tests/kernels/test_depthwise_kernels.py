"""Depthwise convolution kernels: forward against a naive loop, gradients as adjoints, all three targets."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyconv_kernels as kernels
from tinyconv_kernels import depthwise_cpu as DC, depthwise_phases as DP

# (N, C, M, H, W, KH, KW, SH, SW, PH, PW, DH, DW, extra_OH, extra_OW)
GEOMETRIES = [
    (2, 3, 1, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0),
    (2, 2, 2, 7, 6, 3, 2, 2, 1, 1, 2, 1, 2, 0, 0),
    (1, 2, 3, 5, 5, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1),   # 'same' with an even kernel
    (2, 3, 1, 9, 8, 5, 5, 2, 2, 2, 2, 1, 1, 0, 0),
    (1, 1, 2, 9, 5, 7, 1, 3, 1, 3, 0, 2, 1, 0, 0),
]


def _setup(g, dtype, rng):
    N, C, M, H, W, KH, KW, SH, SW, PH, PW, DH, DW, eh, ew = g
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1 + eh
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1 + ew
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C * M, KH, KW)).astype(dtype)
    gy = rng.standard_normal((N, C * M, OH, OW)).astype(dtype)
    return x, w, gy, (SH, SW, PH, PW, DH, DW)


def naive_depthwise(x, w, SH, SW, PH, PW, DH, DW, OH, OW):
    N, C, H, W = x.shape
    K, KH, KW = w.shape
    y = np.zeros((N, K, OH, OW))
    for n, k, oh, ow, kh, kw in np.ndindex(N, K, OH, OW, KH, KW):
        h, v = oh * SH - PH + kh * DH, ow * SW - PW + kw * DW
        if 0 <= h < H and 0 <= v < W:
            y[n, k, oh, ow] += w[k, kh, kw] * x[n, k // (K // C), h, v]
    return y


def _all(impl, x, w, gy, g):
    SH, SW, PH, PW, DH, DW = g
    OH, OW = gy.shape[2:]
    N, C, H, W = x.shape
    KH, KW = w.shape[1:]
    y = kernels.get("depthwise_conv2d", impl)(x, w, SH, SW, PH, PW, DH, DW, OH, OW)
    gx = kernels.get("depthwise_conv2d_grad_input", impl)(gy, w, C, H, W, SH, SW, PH, PW, DH, DW)
    gw = kernels.get("depthwise_conv2d_grad_weight", impl)(x, gy, KH, KW, SH, SW, PH, PW, DH, DW)
    return [a.copy_to_host() if hasattr(a, "copy_to_host") else a for a in (y, gx, gw)]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_reference_matches_naive_loop_and_gradients_are_adjoints(geometry):
    x, w, gy, g = _setup(geometry, np.float64, np.random.default_rng(0))
    y, gx, gw = _all("numpy", x, w, gy, g)
    np.testing.assert_allclose(y, naive_depthwise(x, w, *g, *gy.shape[2:]), rtol=1e-12, atol=1e-12)
    # y is linear in x and in w: <y, gy> = <x, gx> = <w, gw>
    np.testing.assert_allclose((y * gy).sum(), (x * gx).sum(), rtol=1e-10)
    np.testing.assert_allclose((y * gy).sum(), (w * gw).sum(), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_numba_matches_reference(geometry, dtype):
    x, w, gy, g = _setup(geometry, dtype, np.random.default_rng(1))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for got, want in zip(_all("cpu", x, w, gy, g), _all("numpy", x, w, gy, g)):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@st.composite
def geometries(draw):
    """Geometries for the Numba kernels' paths: stride 1 (one phase plane) or larger (SH*SW planes), dilation,
    multiplier M > 1 (the scatter input gradient), kernels of 1 to 25 taps (passes of nine, three and one),
    planes smaller than the kernel when padded, and an output row/column past the usual count ('same')."""
    KH, KW, SH, SW = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    DH, DW, PH, PW = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(0, 3)), draw(st.integers(0, 3))
    H = draw(st.integers(max(1, DH * (KH - 1) + 1 - 2 * PH), 9))
    W = draw(st.integers(max(1, DW * (KW - 1) + 1 - 2 * PW), 9))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.sampled_from([1, 1, 2, 3])), H, W, KH, KW,
            SH, SW, PH, PW, DH, DW, draw(st.integers(0, 1)), draw(st.integers(0, 1)))


@given(geometry=geometries(), dtype=st.sampled_from([np.float32, np.float64]))
def test_numba_paths_match_reference(geometry, dtype):
    x, w, gy, g = _setup(geometry, dtype, np.random.default_rng(3))
    (y, gx, gw), (ry, rgx, rgw) = _all("cpu", x, w, gy, g), _all("numpy", x, w, gy, g)
    assert y.dtype == gx.dtype == gw.dtype == dtype
    # forward and input gradient add the same terms in the same order as the reference: equal to the bit
    np.testing.assert_array_equal(y, ry)
    if w.shape[0] == x.shape[1]:
        np.testing.assert_array_equal(gx, rgx)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gx, rgx, rtol=tol, atol=tol)
    np.testing.assert_allclose(gw, rgw, rtol=tol, atol=tol)
    # the fused backward (one pass over gy) does the same work as the two gradient kernels
    for impl, want in (("cpu", (gx, gw)), ("numpy", (rgx, rgw))):
        both = kernels.get("depthwise_conv2d_backward", impl)(x, gy, w, *g)
        for got, ref in zip(both, want):
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, ref)


@given(geometry=geometries(), where=st.sampled_from(["x", "w", "gy"]), value=st.sampled_from([np.inf, np.nan]),
       index=st.integers(0, 10 ** 6))
def test_numba_matches_reference_with_inf_and_nan(geometry, where, value, index):
    # the flat runs' scratch columns meet inf/NaN only through zero terms; the kernels keep them out
    x, w, gy, g = _setup(geometry, np.float64, np.random.default_rng(4))
    a = {"x": x, "w": w, "gy": gy}[where]
    a.reshape(-1)[index % a.size] = value
    with np.errstate(invalid="ignore"):  # inf * 0 in the reference
        want = _all("numpy", x, w, gy, g)
    for got, want in zip(_all("cpu", x, w, gy, g), want):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # NaN where the reference has NaN


@pytest.mark.parametrize("geometry", [(3, 2, 1, 40, 40, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0),
                                      (3, 2, 2, 40, 39, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0)])
def test_numba_matches_reference_when_images_come_in_blocks(geometry):
    # planes this large are batched two images per job: three images make a full block and a partial one
    x, w, gy, g = _setup(geometry, np.float32, np.random.default_rng(6))
    assert DP._phase_shape(3, gy.shape[2], gy.shape[3], 3, 3, *g[:2], *g[4:])[2] == 2
    (y, gx, gw), (ry, rgx, rgw) = _all("cpu", x, w, gy, g), _all("numpy", x, w, gy, g)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_allclose(gx, rgx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, rgw, rtol=1e-5, atol=1e-4)


def test_numba_results_do_not_depend_on_the_thread_count():
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread")
    x, w, gy, g = _setup((3, 5, 1, 11, 10, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0), np.float32, np.random.default_rng(5))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _all("cpu", x, w, gy, g)
        numba.set_num_threads(2)
        two = _all("cpu", x, w, gy, g)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, two):  # fixed work per plane and a fixed-order sum over n: the same bits
        np.testing.assert_array_equal(a, b)


def test_thread_policy_parallelises_depthwise_below_the_general_size():
    import numba
    from tinyconv_kernels import threads
    size = DC.depthwise_conv2d_cpu.parallel_min_size
    assert size < threads.PARALLEL_MIN_SIZE
    seen = []

    def kernel(a):
        seen.append(numba.get_num_threads())
    kernel.parallel_min_size = size
    run = threads.sized(kernel)
    run(np.zeros(size, np.float32))
    run(np.zeros(size - 1, np.float32))
    assert seen == [threads.max_threads(), 1]


@pytest.mark.parametrize("geometry", [(1, 2, 2, 5, 4, 2, 1, 1, 2, 1, 0, 2, 1, 0, 0),
                                      (2, 1, 1, 4, 4, 1, 2, 1, 1, 0, 1, 1, 1, 0, 1)])
def test_cuda_matches_reference(geometry):
    # tiny shapes: without a GPU this is Numba's CUDA simulator, one Python thread per CUDA thread
    x, w, gy, g = _setup(geometry, np.float32, np.random.default_rng(2))
    for got, want in zip(_all("cuda", x, w, gy, g), _all("numpy", x, w, gy, g)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


_PTX = """
import numpy as np
from numba import cuda, types
from tinyconv_kernels import depthwise_cuda as DG, im2col as I
i = (types.int64,) * 6
for dt in (types.float32, types.float64):
    a = lambda nd: types.Array(dt, nd, "C")
    sigs = [(I._im2col_kernel, (a(4), a(6)) + i + (dt,)), (I._col2im_kernel, (a(6), a(4)) + i + (dt,)),
            (DG._forward_kernel, (a(4), a(3), a(4)) + i + (dt,)),
            (DG._grad_input_kernel, (a(4), a(3), a(4)) + i + (dt,)),
            (DG._grad_weight_kernel(np.dtype(str(dt)).str, 256), (a(4), a(4), a(3)) + i + (dt,))]
    for kernel, sig in sigs:
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(8, 0))
        other = ".f64" if dt == types.float32 else ".f32"
        assert other not in ptx, (kernel.py_func.__name__, dt, "computes in the other precision")
"""


@pytest.mark.slow
def test_cuda_kernels_compile_for_a_real_gpu():
    """The simulator runs kernels as Python; compiling to PTX (needs NVVM, not a GPU) checks they type."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    probe = subprocess.run([sys.executable, "-c", "from numba.cuda.cudadrv import nvvm; "
                            "assert nvvm.is_available()"], env=env, capture_output=True)
    if probe.returncode:
        pytest.skip("NVVM (the CUDA compiler library) is not installed")
    subprocess.run([sys.executable, "-c", _PTX], check=True, env=env)
