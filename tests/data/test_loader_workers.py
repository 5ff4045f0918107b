"""DataLoader(num_workers=...): the same batches in the same order as num_workers=0, and no process left behind
(after a full epoch, a ``break``, an error in a worker, an exception or Ctrl-C in the loop)."""
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tinyconv.data import ArrayDataset, DataLoader
from tinyconv.data import transforms as T

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dataset(n=37):
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8), np.arange(n) % 10)


def collect(loader):
    return [(x.numpy().copy(), y.numpy().copy()) for x, y in loader]


class Exploding(ArrayDataset):
    def get_batch(self, indices, rng=None):
        if 30 in indices:
            raise ValueError("sample 30 is corrupt")
        return super().get_batch(indices, rng)


def no_children(timeout=10.0):
    deadline = time.monotonic() + timeout
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not multiprocessing.active_children()


@pytest.mark.parametrize("workers,prefetch,persistent", [(1, None, False), (2, 1, False), (3, 4, True)])
def test_same_batches_in_the_same_order_as_the_main_process(workers, prefetch, persistent):
    aug = T.Compose([T.RandomCrop(8, padding=2), T.RandomHorizontalFlip()])  # random: seeded per batch
    kw = dict(batch_size=5, shuffle=True, seed=3, transform=aug)
    ref = DataLoader(dataset(), **kw)
    par = DataLoader(dataset(), num_workers=workers, prefetch_factor=prefetch, persistent_workers=persistent, **kw)
    for _ in range(2):  # two epochs: a new order each, identical in both loaders
        a, b = collect(ref), collect(par)
        assert len(a) == len(b) == 8
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    par.close()
    assert no_children()


def test_break_and_exceptions_stop_the_workers():
    loader = DataLoader(dataset(), batch_size=2, num_workers=2)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert no_children()
    with pytest.raises(RuntimeError, match="in the step"):
        for _ in loader:
            raise RuntimeError("in the step")
    assert no_children()
    bad = Exploding(dataset().images, dataset().labels)
    with pytest.raises(ValueError, match="sample 30 is corrupt"):
        collect(DataLoader(bad, batch_size=5, num_workers=2))
    assert no_children()


def test_bad_worker_arguments():
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        DataLoader(dataset(), num_workers=-1)
    with pytest.raises(ValueError, match="need num_workers > 0"):
        DataLoader(dataset(), persistent_workers=True)


SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from tinyconv.data import ArrayDataset, DataLoader

    class Slow(ArrayDataset):
        def get_batch(self, indices, rng=None):
            time.sleep(0.05)
            return super().get_batch(indices, rng)

    ds = Slow(np.zeros((10000, 1, 4, 4), np.uint8), np.zeros(10000, np.int64))
    for i, _ in enumerate(DataLoader(ds, batch_size=4, num_workers=2, persistent_workers={persistent})):
        if i == 2:
            print("running", flush=True)
        time.sleep(0.01)
""")


@pytest.mark.parametrize("persistent", [False, True])
def test_ctrl_c_ends_the_run_and_every_worker(persistent):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(persistent=persistent)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, ".dev"),
                                                                              os.environ.get("PYTHONPATH", "")])})
    try:
        assert proc.stdout.readline().strip() == "running"
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
        _, err = proc.communicate(timeout=30)
        assert proc.returncode != 0 and "KeyboardInterrupt" in err
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # every process of the group is gone
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("worker processes outlived the interrupted run")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
