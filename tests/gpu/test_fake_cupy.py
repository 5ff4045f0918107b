"""The fake-CuPy harness is only worth its green runs if it is as strict as CuPy: these tests pin that down,
and check the CuPy <-> Numba bridge of ``tinyconv.backend`` (views, not copies; no waits) through it."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import backend

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_cupy  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def cp(monkeypatch):
    from numba import config
    if not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU is present: the fake-CuPy harness needs Numba's CUDA simulator")
    return fake_cupy.install(monkeypatch)


def test_implicit_conversions_to_numpy_fail_as_in_cupy(cp):
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    host = np.ones((2, 3))
    for convert in (lambda: np.asarray(a), lambda: np.exp(a), lambda: host + a, lambda: np.matmul(host, a.T)):
        with pytest.raises(TypeError):
            convert()
    with pytest.raises(TypeError, match="Unsupported type"):
        a + host
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.maximum(a, host)
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray"):
        a[...] = host
    a[0] = np.float32(2)                                   # NumPy scalars are fine, as in CuPy
    assert isinstance(a * np.float32(2), cp.ndarray) and isinstance(np.float32(2) * a, cp.ndarray)


def test_reductions_and_scalar_indexing_stay_on_the_device_and_reads_are_recorded(cp):
    a = cp.asarray(np.arange(6.0))
    assert fake_cupy.UPLOADS and not fake_cupy.SYNCS
    total, first = a.sum(), a[0]
    assert isinstance(total, cp.ndarray) and total.shape == () and isinstance(first, cp.ndarray)
    assert isinstance(cp.sum(a), cp.ndarray)
    assert fake_cupy.SYNCS == []
    if total > 3:                                           # a Python `if` on a device value waits for it
        pass
    assert float(total) == 15.0 and a.get().tolist() == [0, 1, 2, 3, 4, 5] and first.item() == 0.0
    assert [what for what, _ in fake_cupy.SYNCS] == ["bool", "float", "get", "item"]
    assert all("test_fake_cupy.py" in where for _, where in fake_cupy.SYNCS), fake_cupy.SYNCS


def test_tinyconv_takes_it_for_cupy(cp):
    t = tc.tensor(np.ones((2, 2), np.float32)).to("cuda")
    assert t.device == "cuda" and backend.get_array_module(t) is cp and backend.get_array_module(t.data) is cp
    assert isinstance(t.data, cp.ndarray)
    assert (t * 2 + 1).device == "cuda"
    fake_cupy.SYNCS.clear()
    np.testing.assert_array_equal(t.numpy(), np.ones((2, 2)))
    assert [what for what, _ in fake_cupy.SYNCS] == ["get"]


def test_it_catches_numpy_called_on_a_device_array(cp):
    class HostExp(tc.Function):      # the bug the harness exists to catch: NumPy on a device array
        def forward(self, x):
            return np.exp(x)

        def backward(self, gy):
            return gy

    with pytest.raises(TypeError):
        HostExp.apply(tc.ones(3).to("cuda"))


def test_cuda_kernels_see_views_of_the_cupy_arrays_and_return_views_without_waiting(cp):
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
    x = cp.asarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    seen = {}

    def kernel(a, scale):
        seen["arg"] = a
        out = FakeCUDAArray(np.empty(a.shape, a.dtype))
        out._ary[...] = a._ary * scale
        seen["out"] = out
        return out, out
    fake_cupy.SYNCS.clear()
    y, z = backend.cuda_kernel(kernel)(x, 2.0)
    assert isinstance(seen["arg"], FakeCUDAArray) and np.shares_memory(seen["arg"]._ary, x._a)
    assert isinstance(y, cp.ndarray) and np.shares_memory(y._a, seen["out"]._ary)
    np.testing.assert_array_equal(y.get(), np.arange(12).reshape(3, 4) * 2)
    assert [what for what, _ in fake_cupy.SYNCS] == ["get"]       # the test's own read, nothing else


def test_a_kernel_under_another_cupy_stream_waits_for_it(cp, monkeypatch):
    monkeypatch.setattr(fake_cupy._Stream, "ptr", 12345)
    fake_cupy.SYNCS.clear()
    backend.cuda_kernel(lambda a: a)(cp.asarray(np.ones(3)))
    assert [what for what, _ in fake_cupy.SYNCS] == ["stream.synchronize", "numba.default_stream.synchronize"]


def test_strided_device_arrays_reach_the_kernels_as_strided_views(cp):
    x = cp.asarray(np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)).transpose(0, 1, 3, 2)
    col = backend.get_kernel("im2col", x)(x, 2, 2, 1, 1, 0, 0, 1, 1, 4, 3)
    from tinyconv_kernels import im2col
    np.testing.assert_array_equal(col.get(), im2col.im2col_numpy(x.get(), 2, 2, 1, 1, 0, 0, 1, 1, 4, 3))


_EMM = r"""
import gc, sys, types, weakref
import numpy as np
from tinyconv import backend

class Allocation:
    next_ptr = 1 << 20
    def __init__(self, size):
        self.ptr, self.size = Allocation.next_ptr, size
        Allocation.next_ptr += 4096

fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
    alloc=Allocation, runtime=types.SimpleNamespace(memGetInfo=lambda: (100, 200))))
backend._cupy, backend._cupy_checked = fake, True

from numba import cuda
cls = backend.cupy_memory_manager()
cuda.set_memory_manager(cls)            # checks the plugin's interface version

class Context:
    pass
ctx = Context()
manager = cls(context=ctx)
manager.initialize()
mem = manager.memalloc(1000)
(address, allocation), = manager.allocations.items()
alive = weakref.ref(allocation)
del allocation
handle = mem.device_pointer
assert int(getattr(handle, "value", handle) or 0) == address and mem.size == 1000
assert tuple(manager.get_memory_info()) == (100, 200)
del mem
gc.collect()
assert len(manager.allocations) == 0 and alive() is None, "the CuPy allocation outlived Numba's pointer"
print("ok")
"""


def test_numba_allocates_from_cupys_pool_through_the_emm_plugin():
    """The EMM plugin with the real numba.cuda driver classes (no GPU needed: a stand-in ``cupy.cuda.alloc``):
    Numba's pointer is CuPy's allocation, which goes back to the pool when Numba's pointer dies."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, ".dev"), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _EMM], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
