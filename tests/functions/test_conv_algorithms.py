"""conv2d under each algorithm picked by hand (``backend.conv_algorithm``): naive loops, im2col, Winograd
F(2x2, 3x3) and F(4x4, 3x3), kn2row, direct.  float64 gradchecks over drawn layers on both kernel paths, PyTorch as the
oracle, the rules and errors of the choice, and that the choice is context-local."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import backend
from tinyconv import functional as F
from tinyconv_kernels import conv_algorithms, winograd4_cpu as WG4C, winograd_conv, winograd_cpu as WGC

fixture_ok = settings(max_examples=15, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def layers(draw, algorithm):
    """Small layers each algorithm can compute: Winograd 3x3 stride 1; kn2row stride 1; direct grouped; naive
    anything."""
    if algorithm in ("winograd", "winograd4"):
        k, s, d, G = (3, 3), (1, 1), (1, 1), 1
    else:
        k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        s, d = (draw(st.integers(1, 2)), draw(st.integers(1, 2))), (draw(st.integers(1, 2)), 1)
        G = draw(st.integers(1, 3)) if algorithm == "direct" else draw(st.integers(1, 2))
        if algorithm == "direct" and G == 1:  # ungrouped: the direct kernels of kernels/direct.py, stride 1
            s, d = (1, 1), (1, 1)
        if algorithm == "kn2row":  # stride 1, no dilation, no groups, padding at most the kernel's size less one
            s, d, G = (1, 1), (1, 1), 1
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    if algorithm == "kn2row":
        p = (min(p[0], k[0] - 1), min(p[1], k[1] - 1))
    Cg, Kg = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    H = max(1, d[0] * (k[0] - 1) + 1 - 2 * p[0]) + draw(st.integers(0, 4))
    W = max(1, d[1] * (k[1] - 1) + 1 - 2 * p[1]) + draw(st.integers(0, 4))
    return dict(N=draw(st.integers(1, 2)), C=G * Cg, K=G * Kg, H=H, W=W, kernel=k, stride=s, padding=p, dilation=d,
                groups=G, bias=draw(st.booleans()))


def _operands(cfg, dtype=tc.float64):
    x = tc.randn(cfg["N"], cfg["C"], cfg["H"], cfg["W"], dtype=dtype, requires_grad=True)
    w = tc.randn(cfg["K"], cfg["C"] // cfg["groups"], *cfg["kernel"], dtype=dtype, requires_grad=True)
    b = tc.randn(cfg["K"], dtype=dtype, requires_grad=True) if cfg["bias"] else None
    return x, w, b


def _conv(cfg):
    return lambda x, w, b=None: F.conv2d(x, w, b, stride=cfg["stride"], padding=cfg["padding"],
                                         dilation=cfg["dilation"], groups=cfg["groups"])


@pytest.mark.parametrize("algorithm", ["naive", "winograd", "winograd4", "kn2row", "direct", "im2col"])
@fixture_ok
@given(data=st.data())
def test_gradcheck_under_each_algorithm(kernels, algorithm, data):
    cfg = data.draw(layers(algorithm))
    x, w, b = _operands(cfg)
    with backend.conv_algorithm(algorithm):
        assert tc.gradcheck(_conv(cfg), [x, w] + ([b] if b is not None else []))


@pytest.mark.parametrize("algorithm", ["naive", "winograd", "winograd4", "kn2row", "direct", "im2col"])
@fixture_ok
@given(data=st.data())
def test_every_algorithm_matches_torch(torch, kernels, algorithm, data):
    cfg = data.draw(layers(algorithm))
    x, w, b = _operands(cfg)
    with backend.conv_algorithm(algorithm):
        y = _conv(cfg)(x, w, b)
        gy = np.random.default_rng(0).standard_normal(y.shape)
        y.backward(tc.tensor(gy))
    tx, tw = torch.tensor(x.numpy(), requires_grad=True), torch.tensor(w.numpy(), requires_grad=True)
    tb = torch.tensor(b.numpy(), requires_grad=True) if b is not None else None
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=cfg["stride"], padding=cfg["padding"],
                                    dilation=cfg["dilation"], groups=cfg["groups"])
    ty.backward(torch.tensor(gy))
    pairs = [(y, ty), (x.grad, tx.grad), (w.grad, tw.grad)] + ([(b.grad, tb.grad)] if b is not None else [])
    for mine, theirs in pairs:
        np.testing.assert_allclose(mine.numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("algorithm, bound", [("winograd", 2e-6), ("winograd4", 3e-5)])
def test_float32_winograd_stays_within_its_stated_error(algorithm, bound):
    """kernels/README.md: F(2x2, 3x3) in float32 within ~1e-6 of the float64 result, relative to its largest value;
    F(4x4, 3x3), with its larger constants (B^T's 4 and 5, A^T's 8), within ~1.5e-5 (forward, dx and dW)."""
    rng = np.random.default_rng(0)
    x64, w64 = rng.standard_normal((2, 128, 14, 14)), rng.standard_normal((128, 128, 3, 3)) * np.sqrt(2 / 1152)
    gy = rng.standard_normal((2, 128, 14, 14))
    results = []
    for dtype, algo in ((np.float64, "im2col"), (np.float32, algorithm)):
        x, w = tc.tensor(x64.astype(dtype), requires_grad=True), tc.tensor(w64.astype(dtype), requires_grad=True)
        with backend.conv_algorithm(algo):
            y = F.conv2d(x, w, padding=1)
            y.backward(tc.tensor(gy.astype(dtype)))
        results.append([y.numpy(), x.grad.numpy(), w.grad.numpy()])
    assert results[1][0].dtype == np.float32
    for ref, got in zip(*results):
        assert np.abs(got - ref).max() / np.abs(ref).max() < bound


def test_auto_picks_winograd_for_wide_3x3_layers_on_the_cpu_only():
    s = conv_algorithms.strategy
    assert s((8, 128, 56, 56), (128, 128, 3, 3), 1, (1, 1), (56, 56), "cpu") == "winograd4"
    assert s((8, 128, 56, 56), (128, 128, 3, 3), 1, (1, 1), (56, 56), "cuda") == "gemm"
    assert s((8, 64, 56, 56), (64, 64, 3, 3), 1, (1, 1), (56, 56), "cpu") == "winograd4"   # 64 * 56 = 3584
    assert s((8, 128, 28, 28), (128, 128, 3, 3), 1, (1, 1), (28, 28), "cpu") == "winograd4"
    assert s((8, 64, 28, 28), (64, 64, 3, 3), 1, (1, 1), (28, 28), "cpu") == "winograd"    # 64 * 28 < 3584
    assert s((16, 256, 16, 16), (256, 256, 3, 3), 1, (1, 1), (16, 16), "cpu") == "winograd"  # planes < 28x28
    assert s((8, 32, 56, 56), (32, 32, 3, 3), 1, (1, 1), (56, 56), "cpu") == "gemm"      # too few channels
    assert s((8, 512, 7, 7), (512, 512, 3, 3), 1, (1, 1), (7, 7), "cpu") == "gemm"       # too few tiles
    assert s((4, 256, 16, 16), (256, 256, 3, 3), 1, (1, 1), (16, 16), "cpu") == "gemm"   # 256 tiles
    assert s((16, 64, 16, 16), (64, 64, 3, 3), 1, (1, 1), (16, 16), "cpu") == "winograd"  # 1024 tiles
    assert s((8, 128, 56, 56), (128, 128, 3, 3), 1, (1, 1), (28, 28), "cpu", stride=(2, 2)) == "gemm"


def test_a_hand_picked_algorithm_that_cannot_run_a_layer_says_so():
    x, w = tc.randn(1, 4, 8, 8), tc.randn(4, 4, 5, 5)
    with backend.conv_algorithm("winograd"), pytest.raises(ValueError, match=r"winograd.*3x3.*weight \(4, 4, 5, 5\)"):
        F.conv2d(x, w)
    with backend.conv_algorithm("winograd4"), pytest.raises(ValueError, match=r"'winograd4'.*stride=\(2, 2\)"):
        F.conv2d(x, tc.randn(4, 4, 3, 3), stride=2)
    with backend.conv_algorithm("direct"), pytest.raises(ValueError, match=r"direct.*stride=\(2, 2\)"):
        F.conv2d(x, w, stride=2)
    with pytest.raises(ValueError, match="unknown algorithm 'fft'"):
        with backend.conv_algorithm("fft"):
            pass


@pytest.mark.parametrize("algorithm, module", [("winograd", WGC), ("winograd4", WG4C)])
def test_the_pick_is_context_local_and_runs_the_algorithms_kernels(monkeypatch, algorithm, module):
    calls, seen = [], []
    name = f"{algorithm}_input_transform_cpu"
    real = getattr(module, name)
    monkeypatch.setattr(backend, "_cpu_wrappers", {})
    monkeypatch.setattr(module, name, lambda *a: calls.append(1) or real(*a))
    x, w = tc.randn(1, 2, 6, 6), tc.randn(3, 2, 3, 3)
    with backend.use_kernels("numba"), backend.conv_algorithm(algorithm):
        t = threading.Thread(target=lambda: seen.append(conv_algorithms.requested()))
        t.start()
        t.join()
        F.conv2d(x, w, padding=1)
    assert calls == [1] and seen == ["auto"] and conv_algorithms.requested() == "auto"


@pytest.mark.parametrize("algorithm, module", [("winograd", WGC), ("winograd4", WG4C)])
def test_numpy_mode_runs_the_picked_algorithms_reference(monkeypatch, algorithm, module):
    monkeypatch.setattr(backend, "_cpu_wrappers", {})
    monkeypatch.setattr(module, f"{algorithm}_input_transform_cpu", lambda *a: pytest.fail("a Numba kernel ran"))
    x, w = tc.randn(2, 3, 6, 6, requires_grad=True), tc.randn(4, 3, 3, 3, requires_grad=True)
    ref = F.conv2d(x, w, padding=1)
    with backend.use_kernels("numpy"), backend.conv_algorithm(algorithm):
        y = F.conv2d(x, w, padding=1)
        y.sum().backward()
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algorithm", ["winograd", "winograd4"])
def test_winograd_gives_the_same_bits_at_any_thread_count(monkeypatch, algorithm):
    monkeypatch.setattr(winograd_conv, "CHUNK_BYTES", 1)  # one image a chunk: the chunks go to helper threads
    rng = np.random.default_rng(0)
    x = tc.tensor(rng.standard_normal((6, 64, 16, 16)).astype(np.float32), requires_grad=True)  # < 2**26 MACs
    w = tc.tensor(rng.standard_normal((64, 64, 3, 3)).astype(np.float32) * 0.03, requires_grad=True)
    results = []
    for n in (1, 2):
        x.grad = w.grad = None
        with tc.threads.num_threads(n), backend.conv_algorithm(algorithm):
            y = F.conv2d(x, w, padding=1)
            y.backward(tc.ones(*y.shape))
        results.append([y.numpy().copy(), x.grad.numpy().copy(), w.grad.numpy().copy()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    x.grad = w.grad = None
    with backend.conv_algorithm("im2col"):  # and the chunks put together are the convolution
        y = F.conv2d(x, w, padding=1)
        y.backward(tc.ones(*y.shape))
    for a, b in zip(results[0], [y.numpy(), x.grad.numpy(), w.grad.numpy()]):
        atol = 1e-4 if algorithm == "winograd" else 3e-5 * np.abs(b).max()  # F(4x4, 3x3)'s larger float32 error
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)


def test_the_environment_variable_sets_the_default():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "TINYCONV_CONV_ALGO": "naive",
           "PYTHONPATH": os.pathsep.join([root, os.path.join(root, ".dev"), os.environ.get("PYTHONPATH", "")])}
    code = "from tinyconv_kernels import conv_algorithms as c; print(c.requested())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "naive"
    env["TINYCONV_CONV_ALGO"] = "fastest"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "TINYCONV_CONV_ALGO='fastest'" in out.stderr
