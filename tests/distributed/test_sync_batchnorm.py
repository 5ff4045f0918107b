"""SyncBatchNorm: a float64 gradient check on one rank; on two ranks, the statistics, running buffers and
gradients of the global batch (equal to one process with the whole batch), and without it the documented
difference (each rank normalises its own shard)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

pytest.importorskip("mpi4py")
import tinyconv as tc  # noqa: E402
from tinyconv import nn  # noqa: E402
from tinyconv import functional as F  # noqa: E402
from tinyconv.distributed.sync_batchnorm import SyncBatchNormFn  # noqa: E402

from models import global_batch, make, shard  # noqa: E402


@given(n=st.integers(2, 4), c=st.integers(1, 3), hw=st.sampled_from([(), (3,), (2, 3)]), affine=st.booleans())
def test_gradcheck_on_one_rank(dist, n, c, hw, affine):
    if dist.get_world_size() != 1:
        pytest.skip("a numerical gradient moves only this rank's input: run on one rank")
    rng = np.random.default_rng(n * 7 + c)
    x = tc.tensor(rng.standard_normal((n, c) + hw), dtype=tc.float64, requires_grad=True)
    g = tc.tensor(rng.standard_normal(c) + 1, dtype=tc.float64, requires_grad=True) if affine else None
    b = tc.tensor(rng.standard_normal(c), dtype=tc.float64, requires_grad=True) if affine else None
    w = tc.tensor(rng.standard_normal((n, c) + hw), dtype=tc.float64)  # a loss that is not a plain sum
    fn = lambda x, g, b: (SyncBatchNormFn.apply(x, g, b, running_mean=None, running_var=None, momentum=0.1,
                                                eps=1e-5) * w).sum()
    assert tc.gradcheck(fn, [x, g, b] if affine else [x, None, None])


def test_one_rank_equals_batch_norm(dist):
    if dist.get_world_size() != 1:
        pytest.skip("one rank")
    bn, sync = nn.BatchNorm2d(3), dist.SyncBatchNorm(3)
    x = tc.randn(4, 3, 5, 5, requires_grad=True)
    x2 = tc.Tensor(x.data.copy(), requires_grad=True)
    ya, yb = bn(x), sync(x2)
    np.testing.assert_allclose(ya.numpy(), yb.numpy(), rtol=1e-5, atol=1e-6)
    (ya * ya).sum().backward(), (yb * yb).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-4, atol=1e-5)
    for k in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(bn.state_dict()[k].numpy(), sync.state_dict()[k].numpy(), rtol=1e-6)


def test_convert_keeps_parameters_buffers_and_keys(dist):
    model = make("resnet")
    keys, tensors = list(model.state_dict()), [id(t) for t in model.state_dict(keep_vars=True).values()]
    converted = dist.convert_sync_batchnorm(model)
    assert converted is model and isinstance(model.bn1, dist.SyncBatchNorm)
    assert isinstance(model.layer1[1].downsample[1], dist.SyncBatchNorm)
    assert list(model.state_dict()) == keys
    assert [id(t) for t in model.state_dict(keep_vars=True).values()] == tensors
    model.eval()
    assert model(tc.randn(2, 1, 8, 8)).shape == (2, 10)  # evaluation: the running statistics


def _grads_and_buffers(model):
    model = getattr(model, "module", model)  # DDP's own names carry PyTorch's "module." prefix
    out = {k: p.grad.numpy().copy() for k, p in model.named_parameters()}
    out.update({k: v.numpy().copy() for k, v in model.state_dict().items() if "running" in k})
    return out


def _step(model, x, y):
    F.cross_entropy(model(x), y).backward()
    return _grads_and_buffers(model)


def test_two_ranks_equal_one_process_and_plain_bn_differs_as_documented(two_ranks):
    dist, r = two_ranks, two_ranks.get_rank()
    x, y = global_batch(8, 0)
    full = _step(make("resnet"), x, y)  # one process, the global batch
    sync = _step(dist.DistributedDataParallel(dist.convert_sync_batchnorm(make("resnet"))), shard(x, r, 2),
                 shard(y, r, 2))
    for k in full:
        np.testing.assert_allclose(sync[k], full[k], rtol=1e-4, atol=1e-6, err_msg=k)
    # plain BatchNorm: each rank normalises with its own shard's statistics, so the averaged gradient is the
    # mean of the two half-batches' own gradients, not the full batch's; each rank's running statistics are
    # its shard's (rank 0's are broadcast to all before the next training forward)
    plain = _step(dist.DistributedDataParallel(make("resnet")), shard(x, r, 2), shard(y, r, 2))
    halves = [_step(make("resnet"), shard(x, i, 2), shard(y, i, 2)) for i in range(2)]
    for k in full:
        if "running" in k:
            np.testing.assert_allclose(plain[k], halves[r][k], rtol=1e-5, atol=1e-7, err_msg=k)
        else:
            np.testing.assert_allclose(plain[k], (halves[0][k] + halves[1][k]) / 2, rtol=1e-4, atol=1e-6,
                                       err_msg=k)
    assert not np.allclose(plain["conv1.weight"], full["conv1.weight"], rtol=1e-2)


def test_uneven_shards(two_ranks):
    """Ranks may hold different batch sizes: the statistics weigh every sample once."""
    dist, r = two_ranks, two_ranks.get_rank()
    x = tc.tensor(np.random.default_rng(0).standard_normal((5, 2, 3, 3)).astype(np.float64))
    sync = dist.SyncBatchNorm(2).double()
    mine = tc.Tensor(x.data[:2] if r == 0 else x.data[2:], requires_grad=True)
    out = sync(mine)
    bn = nn.BatchNorm2d(2).double()
    xr = tc.Tensor(x.data.copy(), requires_grad=True)
    ref = bn(xr)
    np.testing.assert_allclose(out.numpy(), ref.numpy()[:2] if r == 0 else ref.numpy()[2:], rtol=1e-12)
    np.testing.assert_allclose(sync.running_var.numpy(), bn.running_var.numpy(), rtol=1e-12)
