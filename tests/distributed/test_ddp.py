"""DistributedDataParallel: rank 0's weights everywhere at construction, gradients averaged after backward
(bucketed, started from the gradient hooks), so N steps on P ranks with B/P samples each equal N steps on one
process with B samples, to float32 round-off."""
import numpy as np
import pytest

pytest.importorskip("mpi4py")
import tinyconv as tc  # noqa: E402
from tinyconv import nn, optim  # noqa: E402
from tinyconv import functional as F  # noqa: E402

from models import global_batch, make, shard, weights  # noqa: E402

# float32 round-off: the P ranks sum their shard's per-sample gradients in another grouping than one process
# summing all B, so each gradient differs by a few ulps of its magnitude; three SGD steps (lr 0.05, momentum)
# carry that into the weights as relative errors of ~1e-6 (measured: see the README); 1e-4 leaves room for
# the Numba kernels' thread-dependent summation order without admitting a wrong average (a missing 1/P gives
# errors of order 1).
RTOL, ATOL = 1e-4, 1e-5


def train_steps(model, steps, batch, rank=0, world=1, lr=0.05):
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for s in range(steps):
        x, y = global_batch(batch, s)
        opt.zero_grad()
        F.cross_entropy(model(shard(x, rank, world)), shard(y, rank, world)).backward()
        opt.step()
    return model


def assert_same_weights(a, b):
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=RTOL, atol=ATOL, err_msg=k)


def test_construction_broadcasts_rank0_weights_and_buffers(dist):
    model = make("resnet", seed=dist.get_rank())  # different weights on every rank
    model.bn1.running_mean.data[...] = dist.get_rank()
    ddp = dist.DistributedDataParallel(model)
    assert_same_weights(weights(ddp), weights(make("resnet", seed=0)) | {"bn1.running_mean": np.zeros(8)})


@pytest.mark.parametrize("name", ["lenet5", "resnet"])
def test_steps_on_all_ranks_equal_one_process_with_the_global_batch(dist, name):
    p, r = dist.get_world_size(), dist.get_rank()
    model = make(name, seed=r)
    if name == "resnet":  # SyncBatchNorm: the global batch's statistics, as one process sees them
        model = dist.convert_sync_batchnorm(model)
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=0.05 if name == "lenet5" else 0.005)  # buckets
    assert len(ddp._buckets) > 1
    train_steps(ddp, 3, batch=8, rank=r, world=p)
    reference = train_steps(make(name, seed=0), 3, batch=8)
    assert_same_weights(weights(ddp), weights(reference))


def test_buckets_start_during_backward(dist, monkeypatch):
    """Every bucket's reduction is started from a gradient hook (non-blocking), none waits for the end."""
    from tinyconv.distributed import comm
    p = dist.get_world_size()
    started, blocking = [], []
    backend = comm.backend_for(np.zeros(1, np.float32))
    monkeypatch.setattr(backend, "iallreduce", lambda a, f=backend.iallreduce: started.append(a.size) or f(a))
    monkeypatch.setattr(backend, "allreduce", lambda a, op="sum", f=backend.allreduce: blocking.append(a.size)
                        or f(a, op))
    ddp = dist.DistributedDataParallel(make("lenet5"), bucket_cap_mb=0.1)
    x, y = global_batch(4, 0)
    F.cross_entropy(ddp(x), y).backward()
    n_params = sum(q.numel() for q in ddp.parameters())
    if p > 1:
        assert len(started) == len(ddp._buckets) > 1 and sum(started) == n_params and not blocking
    else:
        assert not started and not blocking  # one rank: nothing to reduce


def test_a_parameter_used_twice_is_reduced_after_its_last_gradient(dist):
    """A weight shared by two layers gets two gradients; its bucket, started after the first, is redone."""
    p, r = dist.get_world_size(), dist.get_rank()

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 3)

        def forward(self, x):
            return self.b(self.a(self.a(x).relu()))

    tc.manual_seed(0)
    ddp = dist.DistributedDataParallel(Tied(), bucket_cap_mb=1e-4)  # one bucket per parameter
    rng = np.random.default_rng(0)
    x, y = tc.tensor(rng.standard_normal((4, 6)).astype(np.float32)), tc.tensor(rng.integers(0, 3, 4))
    F.cross_entropy(ddp(shard(x, r, p)), shard(y, r, p)).backward()
    tc.manual_seed(0)
    ref = Tied()
    F.cross_entropy(ref(x), y).backward()
    for (k, a), b in zip(ddp.module.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=RTOL, atol=1e-6, err_msg=k)


def test_no_sync_accumulates_locally_then_averages_the_sum(dist):
    p, r = dist.get_world_size(), dist.get_rank()
    ddp = dist.DistributedDataParallel(make("lenet5"))
    ref = make("lenet5")
    for s in range(2):
        x, y = global_batch(4, s)
        if s == 0:
            with ddp.no_sync():
                F.cross_entropy(ddp(shard(x, r, p)), shard(y, r, p)).backward()
            local = list(ddp.parameters())[0].grad.numpy().copy()
        else:
            F.cross_entropy(ddp(shard(x, r, p)), shard(y, r, p)).backward()
        F.cross_entropy(ref(x), y).backward()
    if p > 1:  # inside no_sync the gradient was this rank's own
        full = make("lenet5")
        x, y = global_batch(4, 0)
        F.cross_entropy(full(x), y).backward()
        assert not np.allclose(local, list(full.parameters())[0].grad.numpy(), rtol=1e-3)
    for a, b in zip(ddp.parameters(), ref.parameters()):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=RTOL, atol=1e-6)


def test_state_dict_keys_are_the_wrapped_modules(dist):
    model = make("lenet5")
    ddp = dist.DistributedDataParallel(model)
    assert list(ddp.state_dict()) == list(model.state_dict())
    prefixed = {"module." + k: v for k, v in model.state_dict().items()}  # a PyTorch DDP checkpoint
    assert ddp.load_state_dict(prefixed) == ([], [])
    assert ddp.module is model and "world_size" in repr(ddp)


def test_ddp_needs_init(monkeypatch, dist):
    from tinyconv.distributed import comm
    monkeypatch.setattr(comm, "_world", None)
    with pytest.raises(RuntimeError, match="init"):
        dist.DistributedDataParallel(make("lenet5"))
