"""The CPU thread policy (kernels/threads.py, the user's knobs in tinyconv/threads.py): small work on one thread,
one knob for both pools."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tinyconv as tc
from tinyconv_kernels import threads


def _threads_seen():
    """A stand-in kernel that reports how many Numba threads it was given."""
    def kernel(x):
        return threads.numba.get_num_threads()
    return threads.sized(kernel)


def test_small_kernels_run_on_one_thread_and_large_ones_on_all():
    kernel = _threads_seen()
    assert kernel(np.zeros(10, np.float32)) == 1
    big = np.zeros(threads.PARALLEL_MIN_SIZE, np.float32)
    assert kernel(big) == threads.max_threads()
    assert kernel(np.zeros(10, np.float32)) == 1


def test_set_num_threads_caps_numba_and_blas():
    from threadpoolctl import threadpool_info
    kernel = _threads_seen()
    big = np.zeros(threads.PARALLEL_MIN_SIZE, np.float32)
    with tc.threads.num_threads(1):
        assert tc.get_num_threads() == 1
        assert kernel(big) == 1
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    assert kernel(big) == threads.max_threads()
    with pytest.raises(ValueError, match="positive integer"):
        tc.set_num_threads(0)


def test_small_products_hold_blas_to_one_thread_and_restore_it():
    with threads.gemm(10):  # the first call finds the BLAS libraries loaded so far (NumPy's among them)
        assert all(lib.get_num_threads() == 1 for lib in threads._blas)
    before = [lib.get_num_threads() for lib in threads._blas]
    with threads.gemm(10):
        assert all(lib.get_num_threads() == 1 for lib in threads._blas)
    assert [lib.get_num_threads() for lib in threads._blas] == before
    with threads.gemm(threads.BLAS_PARALLEL_MIN_MACS):
        assert [lib.get_num_threads() for lib in threads._blas] == before


def test_the_passive_wait_policy_is_only_lent_to_numba():
    code = ("import os; import tinyconv_kernels.threads as t; t._start(); "
            "print(os.environ.get('OMP_WAIT_POLICY'), 'PASSIVE' in t.thread_policy())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "True"]


def test_kernels_give_the_same_result_on_one_thread_and_on_all(kernels):
    x = tc.randn(2, 3, 40, 40)
    w = tc.randn(4, 3, 3, 3)
    y = tc.functional.conv2d(x, w, padding=1).numpy()
    with threads.num_threads(1):
        y1 = tc.functional.conv2d(x, w, padding=1).numpy()
    np.testing.assert_allclose(y1, y, rtol=1e-5, atol=1e-5)
