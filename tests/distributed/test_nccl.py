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


@pytest.mark.cuda
def test_real_nccl(dist):
    if not tc.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy is not installed)")
    r, p = dist.get_rank(), dist.get_world_size()
    x = tc.tensor(np.arange(5, dtype=np.float32) * (r + 1)).to("cuda")
    dist.all_reduce(x)
    np.testing.assert_array_equal(x.numpy(), np.arange(5) * p * (p + 1) / 2)
