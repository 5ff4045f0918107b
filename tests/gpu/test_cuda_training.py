"""Training on device 'cuda': the DataLoader, ``train.fit`` (NaN checks without per-step host syncs),
checkpoints written on the host and loaded on either device, and ``train_lenet.py --device cuda``.

Runs on fake CuPy (``tests/gpu/fake_cupy.py``, kernels served by their NumPy references) and on a real GPU
where there is one; see ``test_cuda_ops.py``.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import backend, nn, optim, train
from tinyconv import functional as F
from tinyconv.data import ArrayDataset, DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_cupy  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(params=["fake-cupy", pytest.param("cuda", marks=pytest.mark.cuda)])
def gpu(request, monkeypatch):
    if request.param == "cuda":
        if not tc.cuda.is_available():
            pytest.skip("no CUDA GPU (or CuPy is not installed): the real-GPU run of this test is skipped")
        monkeypatch.setattr(backend, "_cuda_rng", None)
    else:
        from numba import config
        if not config.ENABLE_CUDASIM:
            pytest.skip("a real GPU is present: the fake-CuPy run needs Numba's CUDA simulator")
        fake_cupy.install(monkeypatch, kernels="reference")
    return request.param


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centres = np.eye(3, 4, dtype=np.float32) * 4
    return centres[y] + rng.standard_normal((n, 4)).astype(np.float32), y


def run(device, tmp_path, epochs=2, lr=0.1, check_every=None):
    tc.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    train_loader = DataLoader(ArrayDataset(*blobs(64, 1)), batch_size=16, shuffle=True, seed=3, device=device)
    test_loader = DataLoader(ArrayDataset(*blobs(32, 2)), batch_size=16, device=device)
    history = train.fit(model, train_loader, test_loader, opt, F.cross_entropy, epochs, device=device,
                        checkpoint_dir=tmp_path / device, progress=False, log=None, check_every=check_every)
    return model, history


def test_the_data_loader_serves_batches_on_the_device(gpu):
    x, y = next(iter(DataLoader(ArrayDataset(*blobs(8, 0)), batch_size=4, device="cuda")))
    assert x.device == y.device == "cuda" and x.dtype == np.float32 and y.dtype == np.int64


def test_fit_on_the_gpu_matches_the_cpu_and_waits_for_the_device_only_at_checks(gpu, tmp_path):
    cpu_model, cpu_history = run("cpu", tmp_path)
    fake_cupy.SYNCS.clear()
    gpu_model, gpu_history = run("cuda", tmp_path)
    for a, b in zip(cpu_history, gpu_history):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc1", "test_acc5"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    for (k, p), (_, q) in zip(cpu_model.state_dict().items(), gpu_model.state_dict().items()):
        np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)
    if gpu == "fake-cupy":
        # 4 steps an epoch, default check every 50: one loss and one accuracy read per epoch in training,
        # one of each per top-k in evaluation, plus the checkpoint's copy of the weights to the host
        # (match on the path inside the repository: the clone itself may live under a folder called "check")
        where = [os.path.relpath(s[1], ROOT) for s in fake_cupy.SYNCS]
        training = [w for w in where if "train_one_epoch" in w or "_EpochSums" in w or "check" in w]
        assert len(training) <= 2 * 2 * 2, fake_cupy.SYNCS
        assert not [w for w in where if w.startswith(("tinyconv/functions", "tinyconv/optim"))]


def test_a_nan_loss_on_the_gpu_is_reported_at_the_next_check(gpu, tmp_path):
    with pytest.raises(train.NonFiniteLossError, match=r"epoch 1, one of steps 1-2"):
        run("cuda", tmp_path, epochs=1, lr=1e30, check_every=2)


def test_a_gpu_checkpoint_loads_on_the_cpu_and_back(gpu, tmp_path):
    gpu_model, _ = run("cuda", tmp_path, epochs=1)
    path = tmp_path / "cuda" / train.CHECKPOINT_NAME
    with np.load(path, allow_pickle=False) as saved:   # arrays on the host, no pickled device arrays
        assert len(saved.files) > 0
    for device in ("cpu", "cuda"):
        tc.manual_seed(1)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(device)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        state = train.load_training_checkpoint(path, model, opt)
        assert state["epoch"] == 1
        for (k, p), (_, q) in zip(gpu_model.state_dict().items(), model.state_dict().items()):
            assert q.device == device
            np.testing.assert_array_equal(q.numpy(), p.numpy(), err_msg=k)
        buffers = [s["momentum_buffer"] for s in opt.state.values()]
        assert len(buffers) == 4
        assert all(backend.device_of(b.data if isinstance(b, tc.Tensor) else b) == device for b in buffers)


def test_a_run_with_gpu_dropout_resumes_bitwise(gpu, tmp_path):
    """Dropout masks on the GPU come from (seed, epoch): resuming from a checkpoint redraws the same ones."""
    def make():
        tc.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loaders = [DataLoader(ArrayDataset(*blobs(64, 1)), batch_size=16, shuffle=True, seed=3, device="cuda"),
                   DataLoader(ArrayDataset(*blobs(32, 2)), batch_size=16, device="cuda")]
        return model, opt, loaders

    def fit(model, opt, loaders, epochs, **kw):
        return train.fit(model, *loaders, opt, F.cross_entropy, epochs, device="cuda", progress=False,
                         log=None, **kw)

    model, opt, loaders = make()
    fit(model, opt, loaders, 3)
    expected = {k: v.numpy() for k, v in model.state_dict().items()}
    model, opt, loaders = make()
    fit(model, opt, loaders, 2, checkpoint_dir=tmp_path)
    tc.manual_seed(123)   # "a new process": the random state must come from the checkpoint
    torn = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    torn_opt = optim.SGD(torn.parameters(), lr=0.1, momentum=0.9)
    fit(torn, torn_opt, loaders, 3, checkpoint_dir=tmp_path, resume=True)
    for k, v in torn.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), expected[k], err_msg=k)
    draws = []   # each epoch has its own stream, the same one each time it is asked for
    for epoch in (1, 2, 1):
        backend.seed_device_rng(epoch)
        draws.append(backend.to_numpy(backend.rng_for(backend.cupy_or_none()).random(8)))
    assert np.array_equal(draws[0], draws[2]) and not np.array_equal(draws[0], draws[1])


def test_train_lenet_device_cuda_without_a_gpu_is_a_clear_error():
    if tc.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda works here")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, ".dev"),
                                                       os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_lenet.py"), "--device", "cuda",
                          "--epochs", "1", "--limit-train", "64", "--limit-test", "64", "--no-progress",
                          "--out", os.devnull], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "CUDA is not available" in out.stderr and "Traceback" not in out.stderr
