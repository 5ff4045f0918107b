"""The CUDA im2col / col2im kernels, 32-bit and 64-bit index versions, against the NumPy reference (on Numba's
CUDA simulator where there is no GPU, on the GPU where there is one), the rule that picks between them, and
(where NVIDIA's NVVM compiler is installed, no GPU needed) the 32-bit kernels' PTX: no 64-bit integer division,
remainder or multiplication left in them."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tinyconv_kernels import im2col as K

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")

# (N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, extra_OH, extra_OW); extra_* widen the output grid past the
# symmetric-padding size (bottom/right padding larger than top/left, as padding='same' with an even kernel)
GEOMETRIES = [
    (2, 3, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0),
    (2, 2, 7, 6, 3, 2, 2, 1, 1, 2, 1, 2, 0, 0),
    (1, 2, 5, 5, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1),
    (2, 1, 8, 9, 1, 7, 3, 2, 0, 3, 1, 1, 0, 0),
    (1, 2, 9, 5, 7, 1, 1, 1, 3, 0, 2, 1, 0, 0),
    (3, 1, 6, 7, 5, 5, 2, 3, 4, 4, 1, 1, 0, 0),   # padding near the kernel's size: whole rows of zeros
]


def _args(g):
    N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, eh, ew = g
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1 + eh
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1 + ew
    return (N, C, H, W), (KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)


@pytest.fixture(params=["simulator", pytest.param("gpu", marks=pytest.mark.cuda)])
def target(request):
    """Where the ``numba.cuda`` kernels run: Numba's CUDA simulator, or a real GPU (``pytest -m cuda``)."""
    from numba import config
    if request.param == "gpu" and config.ENABLE_CUDASIM:
        pytest.skip("no CUDA GPU: the kernels run on Numba's simulator in the 'simulator' run of this test")
    if request.param == "simulator" and not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU is present: the 'gpu' run of this test covers the kernels")
    return request.param


@pytest.mark.parametrize("index32", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_cuda_kernels_match_the_reference(target, geometry, dtype, index32):
    from numba import cuda
    shape, args = _args(geometry)
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    col = K.im2col_cuda(cuda.to_device(x), *args, index32=index32).copy_to_host()
    assert col.dtype == dtype
    np.testing.assert_array_equal(col, K.im2col_numpy(x, *args))
    g = np.random.default_rng(2).standard_normal(col.shape).astype(dtype)
    back = (shape[2], shape[3]) + args[2:8]
    gx = K.col2im_cuda(cuda.to_device(g), *back, index32=index32).copy_to_host()
    assert gx.dtype == dtype and gx.shape == shape
    np.testing.assert_allclose(gx, K.col2im_numpy(g, *back), rtol=1e-6 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-12)


def test_the_32_bit_kernels_run_while_the_sizes_fit_and_the_64_bit_ones_beyond(target, monkeypatch):
    from numba import cuda
    launched = []
    real_launch = K._launch
    monkeypatch.setattr(K, "_launch", lambda kernel, total: launched.append(kernel) or real_launch(kernel, total))
    shape, args = _args(GEOMETRIES[0])
    x = cuda.to_device(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    col = K.im2col_cuda(x, *args)
    K.col2im_cuda(col, shape[2], shape[3], *args[2:8])
    assert launched == [K._im2col_kernel32, K._col2im_kernel32]
    assert K.fits_index32(2**31 - 1) and not K.fits_index32(10, 2**31)
    monkeypatch.setattr(K, "INDEX32_LIMIT", 64)      # pretend x (84 elements) is too large for 32-bit indices
    launched.clear()
    col64 = K.im2col_cuda(x, *args)
    K.col2im_cuda(col64, shape[2], shape[3], *args[2:8])
    assert launched == [K._im2col_kernel64, K._col2im_kernel64]
    np.testing.assert_array_equal(col64.copy_to_host(), col.copy_to_host())


_PTX_SCRIPT = r"""
import re, sys
from numba import cuda, float32, uint32
from tinyconv_kernels import im2col as K
flat = float32[::1]
for kernel in (K._im2col_kernel32, K._col2im_kernel32):
    ptx, _ = cuda.compile_ptx(kernel.py_func, (flat, flat) + (uint32,) * 14 + (float32,), cc=(9, 0))
    wide = re.findall(r"^\s*((?:div|rem|mul\.lo|mad\.lo)\.[su]64)", ptx, re.M)
    print(kernel.py_func.__name__, len(ptx.splitlines()), sorted(set(wide)))
"""


def test_the_32_bit_kernels_compile_to_32_bit_integer_arithmetic():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join([root, os.path.join(root, ".dev")] + sys.path)
    out = subprocess.run([sys.executable, "-c", _PTX_SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        pytest.skip(f"no NVVM compiler for numba.cuda.compile_ptx here: {out.stderr.strip().splitlines()[-1:]}")
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert re.search(r"\[\]$", line), f"64-bit integer arithmetic left in {line}"
