"""examples/train_lenet.py end to end, as a subprocess, on a tiny synthetic MNIST written as IDX files."""
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinyconv import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "train_lenet.py")


def write_idx(path, array):
    """A gzipped IDX file of a uint8 array (magic 00 00 08 ndim, big-endian dims, then the bytes)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def synthetic_digits(n, seed):
    """Class k is a bright 8x8 square at one of ten places on a noisy background."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 2 + 9 * (k // 4), 2 + 6 * (k % 4)
        images[i, r:r + 8, c:c + 8] = 255
    return images, labels


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    for prefix, n, seed in (("train", 256, 0), ("t10k", 64, 1)):
        images, labels = synthetic_digits(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def env(tmp_path):
    e = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), TINYCONV_OFFLINE="1",
             TINYCONV_DATA=str(tmp_path / "nothing-here"), HOME=str(tmp_path / "home"))  # no ~/.cache files
    return e


def run_script(tmp_path, *args, timeout=120):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True,
                          env=env(tmp_path), cwd=tmp_path, timeout=timeout)


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("warning: ", "note: "))]
    assert lines and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_trains_writes_outputs_and_refuses_to_overwrite(tmp_path, digits_dir):
    out = tmp_path / "run"
    common = ["--dataset", "mnist", "--data-dir", digits_dir, "--batch-size", 32, "--limit-train", 96,
              "--limit-test", 32, "--out", out, "--no-progress"]
    result = run_script(tmp_path, *common, "--epochs", 1)
    assert result.returncode == 0, result.stderr
    for name in ("checkpoint.npz", "history.json", "history.csv", "curves.png"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"dataset used: MNIST \(96 train / 32 test images from {re.escape(str(digits_dir))}\), "
                        r"limited by --limit-train/--limit-test; final test accuracy: \d+\.\d\d% "
                        r"\(top-1, after 1 epoch\)", last), last
    assert "not the canonical MNIST files" in result.stderr           # synthetic digits: used, with a warning
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and f"{history[0]['test_acc1']:.2%}" in last
    before = (out / "checkpoint.npz").read_bytes()

    assert_clean_error(run_script(tmp_path, *common, "--epochs", 1), f"--out {out} already holds a run",
                       "--resume", f"rm -r {out}")
    assert (out / "checkpoint.npz").read_bytes() == before             # nothing overwritten
    assert_clean_error(run_script(tmp_path, *common, "--resume", "--epochs", 3), "--resume keeps them",
                       "start afresh")
    assert_clean_error(run_script(tmp_path, *common, "--resume"), "already finished its 1 epochs",
                       "never raises it again", "larger --epochs")
    assert_clean_error(run_script(tmp_path, *common, "--resume", "--modern"), "--modern False", "checkpoint.npz")
    assert_clean_error(run_script(tmp_path, *common, "--resume", "--lr", 0.01), "--lr 0.05", "asks for 0.01",
                       "Drop --lr")
    assert (out / "checkpoint.npz").read_bytes() == before


def test_ctrl_c_then_resume_with_the_checkpoints_settings(tmp_path, digits_dir):
    out = tmp_path / "run"
    args = ["--data-dir", digits_dir, "--batch-size", 32, "--limit-train", 32, "--limit-test", 16, "--out", out,
            "--no-progress", "--lr", 0.02, "--epochs", 150]
    proc = subprocess.Popen([sys.executable, SCRIPT, *map(str, args)], env=env(tmp_path), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not (out / "history.json").exists():
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and re.search(r"interrupted: the last checkpoint .*checkpoint.npz \(after epoch "
                                                r"\d+\) is intact; rerun the same command with --resume", err), err
    stopped = checkpoint.load(out / "checkpoint.npz")["epoch"]
    assert 1 <= stopped < 150
    result = run_script(tmp_path, "--out", out, "--resume", "--no-progress", "--data-dir", digits_dir)
    assert result.returncode == 0, result.stderr
    assert f"resuming after epoch {stopped} with the checkpoint's settings" in result.stdout
    assert "SGD lr 0.02 " in result.stdout and "150 epochs" in result.stdout     # taken from the checkpoint
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == list(range(1, 151))
    lrs = [r["lr"] for r in history]
    assert all(b <= a for a, b in zip(lrs, lrs[1:])) and lrs[0] == 0.02           # never rises


@pytest.mark.parametrize("args,fragments", [
    (["--lr", "-0.05"], ["--lr must be a positive number", "-0.05"]),
    (["--momentum", "-1"], ["--momentum must be in [0, 1)", "-1"]),
    (["--momentum", "1.5"], ["--momentum must be in [0, 1)"]),
    (["--lr", "nan"], ["--lr must be a positive number"]),
    (["--epochs", "0"], ["--epochs must be a positive whole number, got 0"]),
    (["--weight-decay=-1e-4"], ["--weight-decay must be zero or a positive number"]),
    (["--warmup", "-3"], ["--warmup must be zero or a positive number"]),
    (["--data-dir", "/nonexistent/mnist"], ["--data-dir /nonexistent/mnist is not a folder"]),
])
def test_bad_values_are_one_paragraph_errors(tmp_path, args, fragments):
    result = run_script(tmp_path, *args, "--out", tmp_path / "o")
    assert_clean_error(result, *fragments)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_fashion_mnist_files_given_as_mnist_are_refused(tmp_path):
    folder = "/usr/share/datasets/fashion-mnist"
    if not os.path.isfile(os.path.join(folder, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("apt-get install dataset-fashion-mnist to test against the real files")
    assert_clean_error(run_script(tmp_path, "--dataset", "mnist", "--data-dir", folder, "--out", tmp_path / "o"),
                       "wrong data set", "is Fashion-MNIST's train-images-idx3-ubyte", "not MNIST")


def test_data_root_is_a_deprecated_alias(tmp_path, digits_dir):
    result = run_script(tmp_path, "--data-root", tmp_path / "nothing", "--out", tmp_path / "o")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    note, error = result.stderr.strip().splitlines()
    assert note.startswith("note: --data-root is deprecated") and "use --data-dir" in note
    assert error == f"error: --data-dir {tmp_path / 'nothing'} is not a folder: expected the folder holding the " \
                    "MNIST IDX files (train-images-idx3-ubyte[.gz], ...)."


def test_unknown_dataset(tmp_path):
    assert_clean_error(run_script(tmp_path, "--dataset", "cifar"), "unknown dataset 'cifar'", "fashion-mnist")


def test_data_dir_without_files(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_clean_error(run_script(tmp_path, "--data-dir", tmp_path / "empty"),
                       "no MNIST train files in --data-dir", "train-images-idx3-ubyte")


def test_corrupt_data_file(tmp_path, digits_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in os.listdir(digits_dir):
        (bad / f).write_bytes((digits_dir / f).read_bytes())
    data = (bad / "train-images-idx3-ubyte.gz").read_bytes()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])     # truncated gzip
    assert_clean_error(run_script(tmp_path, "--data-dir", bad, "--out", tmp_path / "o"),
                       "cannot be read", "train-images-idx3-ubyte.gz")


def test_checkpoint_of_another_model(tmp_path, digits_dir):
    out = tmp_path / "run"
    checkpoint.save(out / "checkpoint.npz", {"epoch": 1, "model": {"fc.weight": np.zeros((3, 3), np.float32)},
                                             "optimizer": {}, "rng": {}, "history": [], "extra": None})
    result = run_script(tmp_path, "--data-dir", digits_dir, "--out", out, "--resume", "--no-progress")
    assert_clean_error(result, f"checkpoint {out / 'checkpoint.npz'}", "does not fit the model LeNet5",
                       "missing keys: features.0.weight", "unexpected keys: fc.weight")


def test_kill_mid_run_leaves_a_loadable_checkpoint(tmp_path, digits_dir):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, SCRIPT, "--data-dir", str(digits_dir), "--epochs", "1000",
                             "--batch-size", "16", "--limit-train", "64", "--limit-test", "16", "--out", str(out),
                             "--no-progress"], env=env(tmp_path), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not (out / "history.json").exists():
            time.sleep(0.2)
        assert (out / "history.json").exists(), "no epoch finished in time"
        time.sleep(0.5)                                   # somewhere in a later epoch, or in a checkpoint write
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    state = checkpoint.load(out / "checkpoint.npz")
    assert state["epoch"] >= 1 and "features.0.weight" in state["model"]


def test_first_run_says_that_numba_compiles(tmp_path, digits_dir, monkeypatch, capsys):
    """Epoch 1 of a first run waits for Numba's compiler: one line says so, and only when the cache is empty."""
    import importlib.util

    import tinyconv
    spec = importlib.util.spec_from_file_location("train_lenet_under_test", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setenv("TINYCONV_DATA", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    args = ["--dataset", "mnist", "--data-dir", str(digits_dir), "--batch-size", "32", "--limit-train", "64",
            "--limit-test", "32", "--no-progress", "--epochs", "1"]
    for cached in (False, True):
        monkeypatch.setattr(tinyconv, "kernels_compiled", lambda *names, cached=cached: cached)
        with tinyconv.threads.num_threads(tinyconv.get_num_threads()):   # the script caps threads: restore after
            assert script.main(args + ["--out", str(tmp_path / f"run-{cached}")]) in (0, None)
        said = "compiling the Numba kernels" in capsys.readouterr().out
        assert said == (not cached)
