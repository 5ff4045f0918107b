"""``TINYCONV_KERNELS=numpy`` / ``backend.use_kernels('numpy')`` is the textbook framework end to end: every op
runs its NumPy reference, with no chunking, no helper threads and none of the fast paths' special cases."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tinyconv as tc
import tinyconv_kernels
import tinyconv_kernels.conv2d
import tinyconv_kernels.threads
from tinyconv import backend, nn


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),   # plain 3x3
        nn.Conv2d(8, 8, 3, padding=1, groups=8),                      # depthwise
        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU6(),          # thin grouped
        nn.Conv2d(8, 8, 1),                                           # pointwise
        nn.MaxPool2d(2),
        nn.Conv2d(8, 6, 4),                                           # one window covers the image: dense
        nn.Flatten(), nn.Linear(6, 5))


def _step(seed=0):
    tc.manual_seed(seed)
    net = _net()
    opt = tc.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = tc.randn(4, 3, 8, 8)
    y = tc.tensor(np.arange(4) % 5)
    out = []
    for _ in range(2):
        loss = tc.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out, [p.data.copy() for p in net.parameters()]


def test_numpy_mode_takes_no_fast_path_and_starts_no_thread(monkeypatch):
    fast, fast_params = _step()
    forbidden = lambda what: lambda *a, **k: pytest.fail(f"{what} used under use_kernels('numpy')")  # noqa: E731
    for name in ("split_work", "gemm", "sized", "ThreadPoolExecutor", "_start"):
        monkeypatch.setattr(tinyconv_kernels.threads, name, forbidden(f"threads.{name}"))
    monkeypatch.setattr(tinyconv_kernels.conv2d, "_Conv", forbidden("the CPU conv2d strategies"))
    real_get = tinyconv_kernels.get
    targets = set()
    monkeypatch.setattr(tinyconv_kernels, "get", lambda name, target: targets.add(target) or real_get(name, target))
    monkeypatch.setattr(backend, "_cpu_wrappers", {})
    with backend.use_kernels("numpy"):
        plain, plain_params = _step()
    assert targets <= {"numpy"}, targets
    np.testing.assert_allclose(plain, fast, rtol=1e-4)
    for a, b in zip(plain_params, fast_params):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_the_environment_variable_runs_the_references_on_the_calling_thread_only(tmp_path):
    code = """
import threading, numpy as np
import tinyconv as tc, tinyconv.models
import tinyconv_kernels.threads as T
from tinyconv import backend
assert backend.kernel_mode() == 'numpy'
tc.manual_seed(0)
model = tc.models.get_model('lenet5')
opt = tc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x, y = tc.randn(64, 1, 32, 32), tc.tensor(np.arange(64) % 10)
for _ in range(2):
    opt.zero_grad(); tc.functional.cross_entropy(model(x), y).backward(); opt.step()
print(threading.active_count(), T._pool is None, T._started)
"""
    env = dict(os.environ, TINYCONV_KERNELS="numpy")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "True", "False"]
