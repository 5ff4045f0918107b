"""The CPU conv2d kernel's batch chunks and kept col (kernels/conv2d.py): every way of cutting the batch gives
the one-chunk result.  These are strategies of the Numba path; the NumPy reference has none."""
import threading

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F
import tinyconv_kernels.conv2d as conv
from tinyconv_kernels import conv_algorithms, threads

CASES = [
    dict(C=3, K=9, kernel=(3, 3), padding=1),   # K > direct.MAX_OUT: im2col + GEMM (fewer maps run direct)
    dict(C=4, K=6, kernel=(3, 2), stride=(2, 1), padding=(1, 0), groups=2),
    dict(C=4, K=6, kernel=(1, 1), groups=2),                        # pointwise: one image's col is the image
    dict(C=4, K=2, kernel=(1, 1), stride=2, bias=False),            # 1x1 but strided: im2col as usual
    dict(C=2, K=4, kernel=(3, 3), padding=2, dilation=2, bias=False),
]


def _run(case, chunk_bytes, keep_bytes, monkeypatch, x_grad=True, dtype=np.float64):
    """Forward and backward with the given budgets; returns y, dx, dW, db (numpy, None where absent)."""
    case = dict(case)
    C, K, (KH, KW), bias = case.pop("C"), case.pop("K"), case.pop("kernel"), case.pop("bias", True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, C, 7, 6)).astype(dtype)
    w = rng.standard_normal((K, C // case.get("groups", 1), KH, KW)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype) if bias else None
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(conv, "COL_CHUNK_MIN_COLUMNS", 0)  # these images have few columns: chunks by bytes alone
    monkeypatch.setattr(conv, "KEEP_COL_BYTES", keep_bytes)
    tx, tw = tc.tensor(x, requires_grad=x_grad), tc.tensor(w, requires_grad=True)
    tb = tc.tensor(b, requires_grad=True) if bias else None
    y = F.conv2d(tx, tw, tb, **case)
    y.backward(rng.standard_normal(y.shape).astype(dtype))
    return [None if t is None else t.numpy() for t in
            (y, tx.grad if x_grad else None, tw.grad, None if tb is None else tb.grad)]


def _per_image_bytes(case):
    KH, KW = case["kernel"]
    return case["C"] * KH * KW * 7 * 6 * 8  # an upper bound: OH <= 7, OW <= 6, float64


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("images_per_chunk", [1, 2, 3])
def test_chunks_match_one_chunk(case, images_per_chunk, monkeypatch):
    whole = _run(case, 1 << 40, 0, monkeypatch)
    # budgets of about one, two and three images (5 images: chunks of 1, 2 or 3 images, or as even as that allows)
    cut = _run(case, images_per_chunk * _per_image_bytes(case), 0, monkeypatch)
    for a, b in zip(cut, whole):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_kept_col_gives_the_rebuilt_col_gradients(case, monkeypatch):
    rebuilt = _run(case, 1 << 40, 0, monkeypatch)
    kept = _run(case, 1 << 40, 1 << 40, monkeypatch)
    for a, b in zip(kept, rebuilt):
        if a is not None:
            np.testing.assert_array_equal(a, b)  # the same products on the same col: bit for bit


def test_col_is_kept_only_when_small_and_in_one_chunk(monkeypatch):
    # 9 output maps: im2col + GEMM (direct.direct_suits takes dense layers of at most 8)
    x, w = tc.randn(4, 2, 6, 6, requires_grad=True), tc.randn(9, 2, 3, 3, requires_grad=True)
    col_bytes = 2 * 9 * 4 * 4 * 4 * 4  # (C*KH*KW) x (N*OH*OW) float32
    monkeypatch.setattr(conv, "KEEP_COL_BYTES", col_bytes)
    assert F.conv2d(x, w)._ctx.col.shape == (1, 18, 64)
    monkeypatch.setattr(conv, "KEEP_COL_BYTES", col_bytes - 1)
    assert F.conv2d(x, w)._ctx.col is None
    monkeypatch.setattr(conv, "KEEP_COL_BYTES", col_bytes)
    monkeypatch.setattr(conv, "COL_CHUNK_MIN_COLUMNS", 0)
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", col_bytes // 2)  # two chunks: no single col to keep
    assert F.conv2d(x, w)._ctx.col is None


@pytest.mark.parametrize("case", CASES[:3])
def test_chunks_without_an_input_gradient(case, monkeypatch):
    whole = _run(case, 1 << 40, 0, monkeypatch, x_grad=False)
    cut = _run(case, _per_image_bytes(case), 0, monkeypatch, x_grad=False)
    assert cut[1] is None and whole[1] is None
    for a, b in zip(cut, whole):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_chunked_float32_matches_torch(torch, monkeypatch):
    case = dict(CASES[1])
    C, K, (KH, KW) = case.pop("C"), case.pop("K"), case.pop("kernel")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, C, 7, 6)).astype(np.float32)
    w = rng.standard_normal((K, C // case["groups"], KH, KW)).astype(np.float32)
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", 1)  # one image per chunk
    tx, tw = tc.tensor(x, requires_grad=True), tc.tensor(w, requires_grad=True)
    y = F.conv2d(tx, tw, **case)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    ttx, ttw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(ttx, ttw, **case)
    ty.backward(torch.tensor(gy))
    for ours, theirs in [(y, ty), (tx.grad, ttx.grad), (tw.grad, ttw.grad)]:
        want = theirs.detach().numpy()
        np.testing.assert_allclose(ours.numpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_chunks_cover_the_batch_within_the_budget(monkeypatch):
    x, w = np.zeros((7, 2, 6, 6), np.float32), np.zeros((3, 2, 3, 3), np.float32)
    layer = conv._Conv(x, w, (1, 1), (0, 0), (1, 1), (4, 4), 1, np, None, cpu=True)
    per_image = 2 * 9 * 4 * 4 * 4  # C*KH*KW*OH*OW float32
    monkeypatch.setattr(conv, "COL_CHUNK_MIN_COLUMNS", 0)
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", 3 * per_image)  # at most 3 images: 3 chunks, as even as can be
    assert layer.chunks() == [(0, 3), (3, 5), (5, 7)]
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", 6 * per_image)  # two chunks: 4 + 3, not 6 + 1
    assert layer.chunks() == [(0, 4), (4, 7)]
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", per_image - 1)  # below one image: one image at a time
    assert layer.chunks() == [(n, n + 1) for n in range(7)]
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", 1 << 40)
    assert layer.chunks() == [(0, 7)]


def test_chunks_have_the_minimum_columns(monkeypatch):
    """Small maps: chunks take enough images for COL_CHUNK_MIN_COLUMNS columns, whatever their bytes (as many
    chunks as that makes, evened out)."""
    x, w = np.zeros((16, 2, 4, 4), np.float32), np.zeros((3, 2, 3, 3), np.float32)
    layer = conv._Conv(x, w, (1, 1), (1, 1), (1, 1), (4, 4), 1, np, None, cpu=True)  # 16 columns an image
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", 1)  # one image by bytes alone
    monkeypatch.setattr(conv, "COL_CHUNK_MIN_COLUMNS", 0)
    assert layer.chunks() == [(n, n + 1) for n in range(16)]
    monkeypatch.setattr(conv, "COL_CHUNK_MIN_COLUMNS", 64)  # 4 images a chunk
    assert layer.chunks() == [(0, 4), (4, 8), (8, 12), (12, 16)]
    monkeypatch.setattr(conv, "COL_CHUNK_MIN_COLUMNS", 65)  # chunks of 5 images would make 4 chunks: 4 even ones
    assert layer.chunks() == [(0, 4), (4, 8), (8, 12), (12, 16)]
    monkeypatch.setattr(conv, "COL_CHUNK_MIN_COLUMNS", 100)  # 7 images: 3 chunks, 6 + 5 + 5
    assert layer.chunks() == [(0, 6), (6, 11), (11, 16)]
    monkeypatch.setattr(conv, "COL_CHUNK_MIN_COLUMNS", 16 * 16)  # the whole batch
    assert layer.chunks() == [(0, 16)]
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", 1 << 40)  # the byte budget can only make chunks larger
    monkeypatch.setattr(conv, "COL_CHUNK_MIN_COLUMNS", 64)
    assert layer.chunks() == [(0, 16)]


@pytest.mark.parametrize("case", [c for c in CASES if c.get("groups", 1) == 1])  # groups=2: the direct kernels
@pytest.mark.parametrize("x_grad", [True, False])
def test_chunks_on_several_threads_give_the_one_thread_bits(case, x_grad, monkeypatch):
    """A small layer's chunks run on several threads (threads.split_work): every chunk is computed as it is
    alone and dW is summed in chunk order, so the thread count changes no bit."""
    calls = []
    split = threads.split_work
    monkeypatch.setattr(threads, "split_work", lambda fn, items: calls.append(len(items)) or split(fn, items))
    monkeypatch.setattr(threads, "max_threads", lambda: 1)
    serial = _run(case, _per_image_bytes(case), 0, monkeypatch, x_grad=x_grad)
    monkeypatch.setattr(threads, "max_threads", lambda: 3)  # a pool of two helpers, whatever the machine
    threaded = _run(case, _per_image_bytes(case), 0, monkeypatch, x_grad=x_grad)
    assert len(calls) == 4 and min(calls) > 1  # forward and backward, in each run
    for a, b in zip(threaded, serial):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_split_work_keeps_order_and_raises_the_errors_of_any_thread(monkeypatch):
    import time
    monkeypatch.setattr(threads, "max_threads", lambda: 3)
    seen = set()

    def work(i):
        seen.add(threading.current_thread().name)
        time.sleep(0.02)  # long enough for the helpers to start and take items
        return i * i
    assert threads.split_work(work, list(range(10))) == [i * i for i in range(10)]
    assert "MainThread" in seen and any(name.startswith("tinyconv") for name in seen)  # the caller and helpers

    def fail_late(i):
        time.sleep(0.02)
        if i in (7, 9):  # whichever thread takes them: the first in item order is raised
            raise ValueError(f"chunk {i}")
        return i
    with pytest.raises(ValueError, match="chunk 7"):
        threads.split_work(fail_late, list(range(10)))


def test_split_work_never_waits_for_a_helper_that_has_not_started(monkeypatch):
    """The caller takes items too: with every helper stuck elsewhere (a busy machine), it does them all and
    returns, instead of waiting for a helper's share."""
    import time
    monkeypatch.setattr(threads, "max_threads", lambda: 2)
    assert threads.split_work(lambda i: i, [0, 1]) == [0, 1]  # the pool exists now, one helper
    release = threading.Event()
    threads._pool.submit(release.wait)                         # the helper is busy until released
    try:
        t0 = time.perf_counter()
        assert threads.split_work(lambda i: i + 1, list(range(6))) == [1, 2, 3, 4, 5, 6]
        assert time.perf_counter() - t0 < 5
    finally:
        release.set()


def test_split_work_stays_on_the_calling_thread_under_numbas_workqueue_layer(monkeypatch):

    monkeypatch.setattr(threads, "max_threads", lambda: 2)
    monkeypatch.setattr(threads.numba, "threading_layer", lambda: "workqueue")
    seen = set()
    assert threads.split_work(lambda i: seen.add(threading.current_thread().name) or i, [1, 2, 3]) == [1, 2, 3]
    assert seen == {threading.current_thread().name}


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("images_per_chunk", [1, 2, 5])
@pytest.mark.parametrize("x_grad", [True, False])
def test_pointwise_layers_image_by_image_match_im2col(groups, images_per_chunk, x_grad, monkeypatch):
    """1x1 layers with large enough images skip im2col and col2im: the same numbers as through col."""
    monkeypatch.setattr(conv_algorithms, "DIRECT_MAX_TAPS", 0)  # grouped layers through Conv2dFn too
    case = dict(C=4, K=6, kernel=(1, 1), groups=groups)
    per_image = _per_image_bytes(case)
    monkeypatch.setattr(conv, "POINTWISE_MIN_PIXELS", 10 ** 9)  # never image by image: im2col + GEMM
    through_col = _run(case, images_per_chunk * per_image, 0, monkeypatch, x_grad=x_grad)
    monkeypatch.setattr(conv, "POINTWISE_MIN_PIXELS", 1)
    monkeypatch.setattr(conv._Conv, "im2col", lambda *a: pytest.fail("im2col called on a pointwise layer"))
    monkeypatch.setattr(conv._Conv, "input_grad", lambda *a: pytest.fail("col2im called on a pointwise layer"))
    by_image = _run(case, images_per_chunk * per_image, 0, monkeypatch, x_grad=x_grad)
    for a, b in zip(by_image, through_col):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="os.fork")
def test_split_work_in_a_forked_child_makes_its_own_helpers(monkeypatch):
    """A child forked after the pool started has no helper threads: it must not wait on the parent's pool."""
    import os
    monkeypatch.setattr(threads, "max_threads", lambda: 2)
    assert threads.split_work(lambda i: i + 1, [1, 2]) == [2, 3]  # the parent's pool exists now
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the split finishes and is right; SIGALRM ends a hang
        import signal
        signal.alarm(30)
        os._exit(0 if threads.split_work(lambda i: i * 10, [1, 2, 3]) == [10, 20, 30] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4],
                                  dict(C=8, K=3, kernel=(3, 3), padding=1)])   # K < R: the transposed dW
@pytest.mark.parametrize("images_per_chunk", [1, 5])
def test_weight_gradient_as_the_transposed_product(case, images_per_chunk, monkeypatch):
    """dW as (col @ dY^T)^T (``weight_product``, chosen when K/G < R over enough columns) is dY @ col^T:
    the same values to rounding, in W's layout, and the same bits on any thread count."""
    budget = images_per_chunk * _per_image_bytes(case)
    monkeypatch.setattr(conv, "WEIGHT_TRANSPOSED_MIN_COLUMNS", 1 << 40)
    plain = _run(case, budget, 0, monkeypatch)
    monkeypatch.setattr(conv, "WEIGHT_TRANSPOSED_MIN_COLUMNS", 0)
    transposed = _run(case, budget, 0, monkeypatch)
    for a, b in zip(transposed, plain):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert transposed[2].flags.c_contiguous and transposed[2].shape == plain[2].shape
    monkeypatch.setattr(threads, "max_threads", lambda: 3)
    np.testing.assert_array_equal(_run(case, budget, 0, monkeypatch)[2], transposed[2])


def test_the_transposed_weight_product_is_chosen_by_its_rule():
    x, w = np.zeros((1, 16, 32, 32), np.float32), np.zeros((4, 16, 3, 3), np.float32)
    layer = conv._Conv(x, w, (1, 1), (1, 1), (1, 1), (32, 32), 1, np, conv._reference_kernel, cpu=True)
    gy_t, col = np.ones((1, 4, 1024), np.float32), np.ones((1, 144, 1024), np.float32)
    assert not layer.weight_product(gy_t, col).flags.c_contiguous       # 4 filters < 144 rows, 1024 columns
    wide = conv._Conv(x, np.zeros((200, 16, 3, 3), np.float32), (1, 1), (1, 1), (1, 1), (32, 32), 1, np,
                      conv._reference_kernel, cpu=True)
    assert wide.weight_product(np.ones((1, 200, 1024), np.float32), col).flags.c_contiguous  # 200 > 144
    small = conv._Conv(np.zeros((1, 16, 8, 8), np.float32), w, (1, 1), (1, 1), (1, 1), (8, 8), 1, np,
                       conv._reference_kernel, cpu=True)
    assert small.weight_product(gy_t[..., :64], col[..., :64]).flags.c_contiguous  # 64 columns: plain
