"""TF32 in the CUDA matrix products (``tinyconv.cuda.allow_tf32``): off by default, context-local, honoured by
convolutions, ``linear`` and ``matmul`` on device 'cuda', and leaving CuPy's own switches as they were.

On fake CuPy the products round their operands to TF32 where CuPy's switches ask for it (``fake_cupy.matmul``),
so these tests check that tinyconv sets the switches CuPy reads (both of them: the compute type of 2-D
products and the math mode of batched ones); on a real GPU they check that cuBLAS then rounds.
"""
import contextvars
import os
import sys
import threading

import numpy as np
import pytest

import tinyconv as tc
import tinyconv.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_cupy  # noqa: E402
from test_cuda_ops import DEVICES, _device, host  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")


@pytest.fixture(params=DEVICES)
def gpu(request, monkeypatch):
    return _device(request, monkeypatch, "reference")


def data(seed=0, n=256, k=1024, m=256):
    """Products large enough that cuBLAS picks tensor-core kernels when TF32 is allowed (it may run small ones
    on FP32 units even then)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, k)).astype(np.float32), rng.standard_normal((m, k)).astype(np.float32),
            rng.standard_normal((8, 64, 16, 16)).astype(np.float32),
            rng.standard_normal((64, 64, 3, 3)).astype(np.float32))


def relative_error(a, exact):
    return float(np.linalg.norm(a.astype(np.float64) - exact) / np.linalg.norm(exact))


def products(device):
    x, w, img, k = data()
    lin = F.linear(tc.tensor(x).to(device), tc.tensor(w).to(device))
    conv = F.conv2d(tc.tensor(img).to(device), tc.tensor(k).to(device), padding=1)
    return host(lin), host(conv)


def test_tf32_is_off_by_default_and_rounds_the_products_inside_allow_tf32(gpu):
    x, w, img, k = data()
    exact_lin = x.astype(np.float64) @ w.astype(np.float64).T
    exact_conv = host(F.conv2d(tc.tensor(img.astype(np.float64)), tc.tensor(k.astype(np.float64)), padding=1))
    assert not tc.cuda.is_tf32_allowed()
    lin, conv = products("cuda")
    assert relative_error(lin, exact_lin) < 1e-6 and relative_error(conv, exact_conv) < 1e-6
    with tc.cuda.allow_tf32():
        assert tc.cuda.is_tf32_allowed()
        lin32, conv32 = products("cuda")
        cpu_lin, cpu_conv = products("cpu")          # the CPU's products never round to TF32
    assert relative_error(cpu_lin, exact_lin) < 1e-6 and relative_error(cpu_conv, exact_conv) < 1e-6
    for got, exact in ((lin32, exact_lin), (conv32, exact_conv)):
        # TF32 keeps 11 significant bits: each operand is off by at most 2**-11 relative (docs/gpu.md)
        assert 2e-5 < relative_error(got, exact) < 2e-3
    if gpu == "fake-cupy":   # exactly the product of the rounded operands: tinyconv flipped both of CuPy's switches
        rounded = fake_cupy.tf32_round(x).astype(np.float64) @ fake_cupy.tf32_round(w).astype(np.float64).T
        assert relative_error(lin32, rounded) < 1e-6
    assert not tc.cuda.is_tf32_allowed()
    lin_again, _ = products("cuda")
    np.testing.assert_array_equal(lin_again, lin)


def test_cupys_own_switches_are_put_back_after_each_product(gpu):
    if gpu != "fake-cupy":
        pytest.skip("reads fake CuPy's record of the switches")
    linalg, cublas = sys.modules["cupy._core._routines_linalg"], sys.modules["cupy_backends.cuda.libs.cublas"]
    with tc.cuda.allow_tf32():
        products("cuda")
    assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_DEFAULT
    assert cublas.getMathMode(1) == cublas.CUBLAS_DEFAULT_MATH


def test_the_setting_is_context_local(gpu):
    seen = []
    with tc.cuda.allow_tf32():
        thread = threading.Thread(target=lambda: seen.append((tc.cuda.is_tf32_allowed(), products("cuda")[0])))
        thread.start()
        thread.join()
    lin, _ = products("cuda")
    assert seen[0][0] is False
    np.testing.assert_array_equal(seen[0][1], lin)   # the other thread's products stayed FP32

    def pytorch_spelling():
        tc.cuda.matmul.allow_tf32 = True
        return tc.cuda.matmul.allow_tf32, tc.cuda.is_tf32_allowed()
    assert contextvars.copy_context().run(pytorch_spelling) == (True, True)
    assert tc.cuda.matmul.allow_tf32 is False and not tc.cuda.is_tf32_allowed()


def test_tf32_round_keeps_ten_mantissa_bits():
    a = np.array([1 + 2**-10, 1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-12, -3.0, 0.0], np.float32)
    np.testing.assert_array_equal(fake_cupy.tf32_round(a),
                                  np.array([1 + 2**-10, 1.0, 1 + 2**-9, 1.0, -3.0, 0.0], np.float32))
