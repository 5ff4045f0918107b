"""The process group and the collectives on tensors (any number of ranks), and the abort of every rank when
one raises (a subprocess ``mpiexec -n 2``)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("mpi4py")
import tinyconv as tc  # noqa: E402


def test_world_facts(dist):
    from mpi4py import MPI
    assert dist.is_initialized()
    assert dist.get_rank() == MPI.COMM_WORLD.Get_rank()
    assert dist.get_world_size() == MPI.COMM_WORLD.Get_size()
    assert 0 <= dist.get_local_rank() <= dist.get_rank()  # all ranks of a test run share this machine
    assert dist.get_local_rank() == dist.get_rank()
    dist.barrier()


def test_all_reduce_ops(dist):
    r, p = dist.get_rank(), dist.get_world_size()
    x = tc.tensor(np.array([1.0, -2.0, 3.0], np.float32) * (r + 1))
    dist.all_reduce(x)
    expected = np.array([1.0, -2.0, 3.0], np.float32) * sum(range(1, p + 1))
    np.testing.assert_array_equal(x.numpy(), expected)
    y = tc.tensor(np.full(4, r, np.float64))
    dist.all_reduce(y, op=dist.ReduceOp.MAX)
    np.testing.assert_array_equal(y.numpy(), np.full(4, p - 1))
    z = tc.tensor(np.full((2, 3), r + 1.0, np.float32))
    dist.all_reduce(z, op=dist.ReduceOp.AVG)
    np.testing.assert_allclose(z.numpy(), np.full((2, 3), (p + 1) / 2))


def test_broadcast_and_all_gather(dist):
    r, p = dist.get_rank(), dist.get_world_size()
    x = tc.tensor(np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * r)
    dist.broadcast(x, src=p - 1)
    np.testing.assert_array_equal(x.numpy(), np.arange(6).reshape(2, 3) + 10 * (p - 1))
    out = [tc.zeros(2, dtype=tc.int64) for _ in range(p)]
    dist.all_gather(out, tc.tensor(np.array([r, -r], np.int64)))
    assert [o.tolist() for o in out] == [[i, -i] for i in range(p)]
    with pytest.raises(ValueError, match=f"tensor_list has {2 * p} entries"):
        dist.all_gather(out + out, tc.tensor(np.array([r, -r], np.int64)))


def test_collectives_refuse_non_contiguous(dist):
    x = tc.Tensor(np.zeros((4, 3), np.float32).T)
    with pytest.raises(ValueError, match="contiguous"):
        dist.all_reduce(x)


_CRASH = textwrap.dedent("""
    import tinyconv.distributed as dist
    from mpi4py import MPI
    dist.init()
    if dist.get_rank() == 1:
        raise ValueError("boom from the test")
    MPI.COMM_WORLD.Barrier()   # rank 0 would wait here for ever without the abort
    print("rank 0 passed the barrier")
""")


def test_a_crashing_rank_aborts_all(dist, tmp_path):
    if os.environ.get("PMI_RANK") is not None or dist.get_world_size() > 1:
        pytest.skip("starts its own mpiexec: run in the single-process suite")
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        pytest.skip("no mpiexec next to this Python (pip install mpich)")
    script = tmp_path / "crash.py"
    script.write_text(_CRASH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "MPIR_", "HYDRA_"))}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root, os.path.join(root, ".dev"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "rank 1/2 failed" in proc.stderr and "ValueError: boom from the test" in proc.stderr, proc.stderr
    assert "passed the barrier" not in proc.stdout


def test_average_over_ranks_and_main_process(dist):
    r, p = dist.get_rank(), dist.get_world_size()
    out = dist.average_over_ranks({"loss": float(r), "images_per_s": 10.0, "epoch": 3}, mean=("loss",),
                                  total=("images_per_s",))
    assert out == {"loss": (p - 1) / 2, "images_per_s": 10.0 * p, "epoch": 3}
    assert dist.is_main_process() == (r == 0)


def test_hang_target():
    """Hangs only when ``test_the_watchdog_ends_a_hanging_test`` runs it (in a subprocess)."""
    if os.environ.get("TINYCONV_DIST_TEST_HANG") != "1":
        pytest.skip("the watchdog test's target")
    import time
    time.sleep(600)


def test_the_watchdog_ends_a_hanging_test(dist):
    if os.environ.get("PMI_RANK") is not None or dist.get_world_size() > 1:
        pytest.skip("runs pytest in a subprocess: run in the single-process suite")
    env = dict(os.environ, TINYCONV_DIST_TEST_HANG="1", TINYCONV_DIST_TEST_TIMEOUT="3")
    env = {k: v for k, v in env.items() if not k.startswith(("PMI_", "PMIX_", "MPIR_", "HYDRA_"))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"{os.path.abspath(__file__)}::test_hang_target"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "Timeout" in proc.stderr and "in test_hang_target" in proc.stderr, proc.stderr[-2000:]
