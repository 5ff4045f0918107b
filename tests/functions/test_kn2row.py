"""kn2row (kernels/kn2row.py): the convolution computed on the output's side, for layers with fewer output maps
than input maps.  Its gradchecks and PyTorch comparisons over drawn layers are test_conv_algorithms.py's; here:
the chunks, the thread count, NumPy mode, its float32 error, the rule that picks it and its errors."""
import numpy as np
import pytest

import tinyconv as tc
from tinyconv import backend
from tinyconv import functional as F
from tinyconv_kernels import conv2d, conv_algorithms, im2col as im2col_kernels, kn2row


def _run(x, w, algorithm, **kw):
    """y, dx, dW of one forward + backward (dY = 1) under ``algorithm``, as NumPy arrays."""
    x, w = tc.tensor(x, requires_grad=True), tc.tensor(w, requires_grad=True)
    with backend.conv_algorithm(algorithm):
        y = F.conv2d(x, w, **kw)
        y.backward(tc.tensor(np.linspace(-1, 1, y.size).reshape(y.shape).astype(y.numpy().dtype)))
    return [y.numpy().copy(), x.grad.numpy().copy(), w.grad.numpy().copy()]


@pytest.mark.parametrize("kernel, padding", [((3, 3), (1, 1)), ((3, 3), (0, 2)), ((5, 3), (4, 0)), ((2, 2), (1, 0)),
                                             ((1, 1), (0, 0))])
@pytest.mark.parametrize("images_per_chunk", [1, 2, 5])
def test_every_chunking_gives_the_convolution(kernel, padding, images_per_chunk, monkeypatch):
    """float64, 5 images cut into chunks of 1, 2 (2 + 2 + 1... evened: 2, 2, 1) or all 5, against im2col."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((5, 6, 7, 6)), rng.standard_normal((3, 6) + kernel)
    want = _run(x, w, "im2col", padding=padding)
    monkeypatch.setattr(conv2d, "COL_CHUNK_MIN_COLUMNS", 0)
    monkeypatch.setattr(conv2d, "COL_CHUNK_BYTES", images_per_chunk * 6 * kernel[0] * kernel[1] * 7 * 6 * 8)
    got = _run(x, w, "kn2row", padding=padding)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_the_same_bits_at_any_thread_count(monkeypatch):
    monkeypatch.setattr(conv2d, "COL_CHUNK_MIN_COLUMNS", 0)
    monkeypatch.setattr(conv2d, "COL_CHUNK_BYTES", 1)  # one image a chunk: a small layer's chunks go to helpers
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 64, 8, 8)).astype(np.float32)  # 6*16*64*576 multiply-adds: below 2**26
    w = (rng.standard_normal((16, 64, 3, 3)) * 0.05).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        with tc.threads.num_threads(n):
            results.append(_run(x, w, "kn2row", padding=1))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_float32_error_is_im2cols():
    """The same multiply-adds in another order: float32 as close to float64 as im2col + GEMM is."""
    rng = np.random.default_rng(2)
    x64, w64 = rng.standard_normal((4, 128, 12, 12)), rng.standard_normal((32, 128, 3, 3)) * np.sqrt(2 / 1152)
    ref = _run(x64, w64, "im2col", padding=1)
    for algorithm in ("im2col", "kn2row"):
        got = _run(x64.astype(np.float32), w64.astype(np.float32), algorithm, padding=1)
        for a, b in zip(got, ref):
            assert a.dtype == np.float32
            assert np.abs(a - b).max() / np.abs(b).max() < 2e-6, algorithm


def test_numpy_mode_runs_the_references(monkeypatch):
    monkeypatch.setattr(backend, "_cpu_wrappers", {})
    for name in ("im2col_cpu", "col2im_cpu"):
        monkeypatch.setattr(im2col_kernels, name, lambda *a, name=name: pytest.fail(f"{name} ran"))
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((3, 8, 6, 5)), rng.standard_normal((2, 8, 3, 3))
    with backend.use_kernels("numpy"):
        got = _run(x, w, "kn2row", padding=1)
        want = _run(x, w, "naive", padding=1)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_the_kernels_that_run(monkeypatch):
    """Forward runs col2im (no im2col); backward one im2col of dY (no col2im)."""
    calls = []
    monkeypatch.setattr(backend, "_cpu_wrappers", {})
    for name in ("im2col_cpu", "col2im_cpu"):
        real = getattr(im2col_kernels, name)
        monkeypatch.setattr(im2col_kernels, name, lambda *a, real=real, name=name: calls.append(name) or real(*a))
    x, w = tc.randn(2, 8, 6, 6, requires_grad=True), tc.randn(2, 8, 3, 3, requires_grad=True)
    with backend.use_kernels("numba"), backend.conv_algorithm("kn2row"):
        y = F.conv2d(x, w, padding=1)
        assert calls == ["col2im_cpu"]
        y.sum().backward()
    assert calls == ["col2im_cpu", "im2col_cpu"]


def test_auto_picks_it_for_narrowing_layers_on_the_cpu():
    s = conv_algorithms.strategy
    assert s((16, 128, 16, 16), (32, 128, 3, 3), 1, (1, 1), (16, 16), "cpu") == "kn2row"  # DenseNet's 3x3 layers
    assert s((16, 128, 2, 2), (32, 128, 3, 3), 1, (1, 1), (2, 2), "cpu") == "kn2row"
    assert s((16, 64, 16, 16), (32, 64, 3, 3), 1, (1, 1), (16, 16), "cpu") == "kn2row"  # twice as many in as out
    assert s((16, 63, 16, 16), (32, 63, 3, 3), 1, (1, 1), (16, 16), "cpu") == "gemm"    # fewer
    assert s((16, 128, 16, 16), (32, 128, 3, 3), 1, (3, 3), (20, 20), "cpu") == "gemm"  # padding 3: it cannot
    assert s((16, 128, 16, 16), (32, 128, 3, 3), 1, (1, 1), (16, 16), "cuda") == "gemm"
    assert s((16, 64, 16, 16), (64, 64, 3, 3), 1, (1, 1), (16, 16), "cpu") == "winograd"  # as many maps out as in
    assert s((16, 128, 16, 16), (32, 128, 3, 3), 1, (1, 1), (8, 8), "cpu", stride=(2, 2)) == "gemm"
    assert s((16, 128, 16, 16), (32, 128, 1, 1), 1, (0, 0), (16, 16), "cpu") == "gemm"  # 1x1: no copies to save


def test_a_layer_it_cannot_compute_says_so():
    x = tc.randn(1, 4, 8, 8)
    with backend.conv_algorithm("kn2row"):
        with pytest.raises(ValueError, match=r"'kn2row'.*stride=\(2, 2\)"):
            F.conv2d(x, tc.randn(2, 4, 3, 3), stride=2)
        with pytest.raises(ValueError, match=r"'kn2row'.*padding=\(3, 1\)"):
            F.conv2d(x, tc.randn(2, 4, 3, 3), padding=(3, 1))
        with pytest.raises(ValueError, match=r"'kn2row'.*groups=2"):
            F.conv2d(x, tc.randn(2, 2, 3, 3), groups=2)


def test_applies():
    assert kn2row.applies((1, 4, 8, 8), (2, 4, 3, 3), 1, (1, 1), (1, 1), (2, 2))
    assert not kn2row.applies((1, 4, 8, 8), (2, 4, 3, 3), 1, (1, 1), (1, 1), (3, 0))
    assert not kn2row.applies((1, 4, 8, 8), (2, 4, 3, 3), 1, (1, 1), (2, 1), (1, 1))
