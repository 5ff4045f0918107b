"""Grouped convolution kernels: forward against a naive loop, gradients as adjoints, all three targets."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tinyconv_kernels as kernels
from tinyconv_kernels import grouped_cpu as GC

# (N, G, Cg, Kg, H, W, KH, KW, SH, SW, PH, PW, DH, DW, extra_OH, extra_OW)
GEOMETRIES = [
    (2, 3, 2, 2, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0),
    (2, 2, 3, 5, 7, 6, 3, 2, 2, 1, 1, 2, 1, 2, 0, 0),    # Kg = 5: a block of four and one left over
    (1, 2, 2, 4, 5, 5, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1),    # 'same' with an even kernel (bottom/right pad)
    (2, 4, 1, 8, 9, 8, 5, 5, 2, 2, 2, 2, 1, 1, 0, 0),
    (1, 2, 2, 1, 9, 5, 7, 1, 3, 1, 3, 0, 2, 1, 0, 0),
    (1, 2, 4, 4, 11, 10, 3, 3, 1, 3, 0, 2, 2, 1, 0, 0),  # stride only along W
    (1, 2, 2, 2, 40, 3, 3, 1, 1, 1, 1, 0, 1, 1, 0, 0),   # more rows than one chunk holds, W narrower than KW*DW
    (1, 2, 2, 3, 4, 5, 1, 2, 1, 1, 1, 2, 1, 1, 0, 0),    # stride 1, padding past the kernel: gx by scatter
]


def _setup(g, dtype, rng):
    N, G, Cg, Kg, H, W, KH, KW, SH, SW, PH, PW, DH, DW, eh, ew = g
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1 + eh
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1 + ew
    x = rng.standard_normal((N, G * Cg, H, W)).astype(dtype)
    w = rng.standard_normal((G * Kg, Cg, KH, KW)).astype(dtype)
    gy = rng.standard_normal((N, G * Kg, OH, OW)).astype(dtype)
    return x, w, gy, G, (SH, SW, PH, PW, DH, DW)


def naive_grouped(x, w, SH, SW, PH, PW, DH, DW, OH, OW):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    Kg = K // (C // Cg)
    y = np.zeros((N, K, OH, OW))
    for n, k, oh, ow, j, kh, kw in np.ndindex(N, K, OH, OW, Cg, KH, KW):
        h, v = oh * SH - PH + kh * DH, ow * SW - PW + kw * DW
        if 0 <= h < H and 0 <= v < W:
            y[n, k, oh, ow] += w[k, j, kh, kw] * x[n, (k // Kg) * Cg + j, h, v]
    return y


def _all(impl, x, w, gy, G, g):
    SH, SW, PH, PW, DH, DW = g
    OH, OW = gy.shape[2:]
    N, C, H, W = x.shape
    KH, KW = w.shape[2:]
    y = kernels.get("grouped_conv2d", impl)(x, w, SH, SW, PH, PW, DH, DW, OH, OW)
    gx = kernels.get("grouped_conv2d_grad_input", impl)(gy, w, C, H, W, SH, SW, PH, PW, DH, DW)
    gw = kernels.get("grouped_conv2d_grad_weight", impl)(x, gy, G, KH, KW, SH, SW, PH, PW, DH, DW)
    return [a.copy_to_host() if hasattr(a, "copy_to_host") else a for a in (y, gx, gw)]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_reference_matches_naive_loop_and_gradients_are_adjoints(geometry):
    x, w, gy, G, g = _setup(geometry, np.float64, np.random.default_rng(0))
    y, gx, gw = _all("numpy", x, w, gy, G, g)
    np.testing.assert_allclose(y, naive_grouped(x, w, *g, *gy.shape[2:]), rtol=1e-12, atol=1e-12)
    # y is linear in x and in w: <y, gy> = <x, gx> = <w, gw>
    np.testing.assert_allclose((y * gy).sum(), (x * gx).sum(), rtol=1e-10)
    np.testing.assert_allclose((y * gy).sum(), (w * gw).sum(), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_numba_matches_reference(geometry, dtype):
    x, w, gy, G, g = _setup(geometry, dtype, np.random.default_rng(1))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for got, want in zip(_all("cpu", x, w, gy, G, g), _all("numpy", x, w, gy, G, g)):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_numba_chunks_agree(monkeypatch):
    """The rows-per-chunk split is invisible: one row per chunk and all rows in one give the same results."""
    x, w, gy, G, g = _setup(GEOMETRIES[0], np.float64, np.random.default_rng(3))
    want = _all("numpy", x, w, gy, G, g)
    for chunk in (1, 10 ** 6):
        monkeypatch.setattr(GC, "CHUNK", chunk)
        for got, ref in zip(_all("cpu", x, w, gy, G, g), want):
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geometry", [(1, 2, 2, 3, 5, 4, 2, 1, 1, 2, 1, 0, 2, 1, 0, 0),
                                      (2, 2, 1, 2, 4, 4, 1, 2, 1, 1, 0, 1, 1, 1, 0, 1)])
def test_cuda_matches_reference(geometry):
    # tiny shapes: without a GPU this is Numba's CUDA simulator, one Python thread per CUDA thread
    x, w, gy, G, g = _setup(geometry, np.float32, np.random.default_rng(2))
    for got, want in zip(_all("cuda", x, w, gy, G, g), _all("numpy", x, w, gy, G, g)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


_PTX = """
from numba import cuda, types
from tinyconv_kernels import grouped_cuda as GK
i = (types.int64,) * 6
for dt in (types.float32, types.float64):
    a = lambda nd: types.Array(dt, nd, "C")
    for kernel in (GK._forward_kernel, GK._grad_input_kernel, GK._grad_weight_kernel):
        ptx, _ = cuda.compile_ptx(kernel.py_func, (a(4), a(4), a(4)) + i + (dt,), cc=(8, 0))
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
