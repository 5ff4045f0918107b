"""``train.fit`` under MPI: a data-parallel run equals one process with the global batch, rank 0 alone logs and
writes, every rank resumes from rank 0's checkpoint; ``examples/train_lenet.py`` under ``mpiexec -n 2``."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mpi4py")
import tinyconv as tc  # noqa: E402
from tinyconv import nn, optim, train  # noqa: E402
from tinyconv import functional as F  # noqa: E402
from tinyconv.data import ArrayDataset, DataLoader  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    return np.eye(3, 4, dtype=np.float32)[y] * 3 + rng.standard_normal((n, 4)).astype(np.float32), y


def setup(dist, world, rank, batch=16):
    tc.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ds = ArrayDataset(*blobs(64, 1))
    sampler = dist.DistributedSampler(ds, num_replicas=world, rank=rank, seed=3)
    loader = DataLoader(ds, batch_size=batch // world, sampler=sampler)
    return model, opt, loader, DataLoader(ArrayDataset(*blobs(32, 2)), batch_size=16)


def test_fit_on_all_ranks_equals_one_process_and_resumes_from_rank0(dist, shared_tmp):
    p, r = dist.get_world_size(), dist.get_rank()
    model, opt, loader, test_loader = setup(dist, 1, 0)  # one process, the global batch of 16
    reference = train.fit(model, loader, test_loader, opt, F.cross_entropy, 2, progress=False, log=None)
    expected = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    lines = []
    model, opt, loader, test_loader = setup(dist, p, r)
    ddp = dist.DistributedDataParallel(model)
    train.fit(ddp, loader, test_loader, opt, F.cross_entropy, 1, checkpoint_dir=shared_tmp,
              history_path=os.path.join(shared_tmp, "history"), progress=False, log=lines.append)
    dist.barrier()
    model, opt, loader, test_loader = setup(dist, p, r)  # a fresh start: every rank resumes from rank 0's file
    ddp = dist.DistributedDataParallel(model)
    history = train.fit(ddp, loader, test_loader, opt, F.cross_entropy, 2, checkpoint_dir=shared_tmp,
                        resume=True, history_path=os.path.join(shared_tmp, "history"), progress=False,
                        log=lines.append)
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v.numpy(), expected[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert (len(lines) > 0) == (r == 0)  # rank 0 alone logs
    for mine, ref in zip(history, reference):  # train loss and accuracy are the global batch's
        for key in ("train_loss", "train_acc", "test_loss", "test_acc1"):
            assert mine[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-6), key
    dist.barrier()
    with open(os.path.join(shared_tmp, "history.json")) as f:
        assert [rec["epoch"] for rec in json.load(f)] == [1, 2]


@pytest.mark.slow
def test_train_lenet_example_under_mpiexec(dist, tmp_path):
    if dist.get_world_size() > 1 or os.environ.get("PMI_RANK") is not None:
        pytest.skip("starts its own mpiexec: run in the single-process suite")
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        pytest.skip("no mpiexec next to this Python (pip install mpich)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "MPIR_", "HYDRA_"))}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, ".dev"), env.get("PYTHONPATH", "")])
    cmd = [mpiexec, "-n", "2", sys.executable, os.path.join(ROOT, "examples", "train_lenet.py"), "--epochs", "1",
           "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("final test accuracy") == 1  # rank 0 alone prints
    assert "2 processes" in proc.stdout
    assert (tmp_path / "run" / "checkpoint.npz").exists()
