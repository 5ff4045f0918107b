"""The GPU path: NCCL on CuPy arrays, in place on the device, bootstrapped over MPI.  Runs on fake CuPy with the
fake NCCL of ``fake_nccl.py`` (MPI on the host memory behind fake CuPy's pointers); on a machine with a GPU and
NCCL, ``test_real_nccl`` runs the same collectives for real."""
import numpy as np
import pytest

pytest.importorskip("mpi4py")
import tinyconv as tc  # noqa: E402
from tinyconv import functional as F  # noqa: E402

import fake_cupy  # noqa: E402  (tests/gpu, on the path through conftest)
import fake_nccl  # noqa: E402
from models import global_batch, make, shard  # noqa: E402


@pytest.fixture
def gpu(dist, monkeypatch):
    from numba import config
    if not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU is present: the fake-CuPy run needs Numba's CUDA simulator")
    fake_cupy.install(monkeypatch, kernels="reference")
    fake_nccl.install(monkeypatch, fake_cupy)
    return dist


def test_collectives_run_through_nccl_in_place_on_the_device(gpu):
    dist, r, p = gpu, gpu.get_rank(), gpu.get_world_size()
    x = tc.tensor(np.arange(5, dtype=np.float32) * (r + 1)).to("cuda")
    before = x.data
    fake_cupy.UPLOADS.clear(), fake_cupy.SYNCS.clear()
    dist.all_reduce(x)
    assert x.data is before and x.device == "cuda"  # in place, on the device
    assert not fake_cupy.SYNCS and not fake_cupy.UPLOADS  # no host round trip
    assert fake_nccl.CALLS == [("allReduce", 5, fake_nccl.NCCL_FLOAT32)]
    np.testing.assert_array_equal(x.data.get(), np.arange(5) * p * (p + 1) / 2)
    y = tc.tensor(np.full(3, r, np.int64)).to("cuda")
    dist.broadcast(y, src=p - 1)
    np.testing.assert_array_equal(y.data.get(), np.full(3, p - 1))
    out = [tc.zeros(2).to("cuda") for _ in range(p)]
    dist.all_gather(out, tc.tensor(np.array([r, r + 0.5], np.float32)).to("cuda"))
    assert [o.data.get().tolist() for o in out] == [[i, i + 0.5] for i in range(p)]
    assert [c[0] for c in fake_nccl.CALLS] == ["allReduce", "bcast", "allGather"]


def test_ddp_on_the_gpu_equals_the_cpu(gpu):
    dist, r, p = gpu, gpu.get_rank(), gpu.get_world_size()
    x, y = global_batch(4, 0)
    cpu = dist.DistributedDataParallel(make("lenet5", seed=r))
    F.cross_entropy(cpu(shard(x, r, p)), shard(y, r, p)).backward()
    fake_nccl.CALLS.clear()
    gpu_model = dist.DistributedDataParallel(make("lenet5", seed=r).to("cuda"), bucket_cap_mb=0.1)
    F.cross_entropy(gpu_model(shard(x, r, p).to("cuda")), shard(y, r, p).to("cuda")).backward()
    kinds = [c[0] for c in fake_nccl.CALLS]
    assert kinds.count("bcast") == len(list(gpu_model.parameters()))  # rank 0's weights at construction
    assert kinds.count("allReduce") == (len(gpu_model._buckets) if p > 1 else 0)  # one call per bucket
    for a, b in zip(cpu.parameters(), gpu_model.parameters()):
        assert b.grad.device == "cuda"
        np.testing.assert_allclose(b.grad.data.get(), a.grad.numpy(), rtol=1e-4, atol=1e-6)


def _stand_in_cupy(monkeypatch, nccl):
    """A module named like CuPy 13+: ``cuda`` has no ``nccl`` attribute until ``<name>.cuda.nccl`` is imported
    (here: found in ``sys.modules``, or, with ``nccl=None``, not importable at all)."""
    import sys
    import types
    cupy, cuda = types.ModuleType("stand_in_cupy"), types.ModuleType("stand_in_cupy.cuda")
    cupy.cuda, cupy.__version__ = cuda, "14.2.0"
    for name, mod in (("stand_in_cupy", cupy), ("stand_in_cupy.cuda", cuda), ("stand_in_cupy.cuda.nccl", nccl)):
        if mod is None:
            monkeypatch.delitem(sys.modules, name, raising=False)
        else:
            monkeypatch.setitem(sys.modules, name, mod)
    return cupy


def test_the_nccl_submodule_is_imported_not_read_as_an_attribute(monkeypatch):
    """``import cupy`` leaves ``cupy.cuda.nccl`` unimported; on a real H200 the backend's plain attribute
    read raised AttributeError before any collective ran."""
    from tinyconv.distributed import comm
    assert comm.nccl_module(_stand_in_cupy(monkeypatch, fake_nccl)) is fake_nccl


def test_cupy_without_nccl_is_a_clear_error(monkeypatch):
    from tinyconv.distributed import comm
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        comm.nccl_module(None)
    with pytest.raises(RuntimeError, match="importing cupy.cuda.nccl failed"):
        comm.nccl_module(_stand_in_cupy(monkeypatch, None))
    monkeypatch.setattr(fake_nccl, "available", False, raising=False)
    with pytest.raises(RuntimeError, match="CuPy 14.2.0 could not load the NCCL library"):
        comm.nccl_module(_stand_in_cupy(monkeypatch, fake_nccl))


@pytest.mark.cuda
def test_real_nccl(dist):
    if not tc.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy is not installed)")
    from tinyconv import backend
    from tinyconv.distributed import comm
    try:
        comm.nccl_module(backend.cupy_or_none())
    except RuntimeError as e:  # the GPU is there, NCCL's library is not: what a user gets is this error
        pytest.skip(str(e))
    r, p = dist.get_rank(), dist.get_world_size()
    x = tc.tensor(np.arange(5, dtype=np.float32) * (r + 1)).to("cuda")
    dist.all_reduce(x)
    np.testing.assert_array_equal(x.numpy(), np.arange(5) * p * (p + 1) / 2)
