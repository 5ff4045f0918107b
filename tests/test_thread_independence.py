"""Results independent of threads: the BLAS policy holds whichever Python thread trains, two models trained
at once give the bits each gives alone, the thread count changes no bit except in products of >= 2**26
multiply-adds (their BLAS split), and a resume under another thread cap is still exact."""
import threading

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F
from tinyconv import nn, optim, threads
from tinyconv_kernels import threads as kernel_threads
from tinyconv import train as T
from tinyconv.data import ArrayDataset, DataLoader

BIG = kernel_threads.BLAS_PARALLEL_MIN_MACS


def blas_counts():
    return [lib.get_num_threads() for lib in kernel_threads._blas_libs()]     # the libraries NumPy was found with


def in_thread(fn, *args):
    out = []
    t = threading.Thread(target=lambda: out.append(fn(*args)))
    t.start()
    t.join()
    return out[0]


@pytest.fixture(autouse=True)
def no_cap():
    tc.set_num_threads(None)
    yield
    tc.set_num_threads(None)


def test_set_num_threads_from_a_worker_thread_caps_blas():
    in_thread(tc.set_num_threads, 1)
    assert blas_counts() and set(blas_counts()) == {1}
    in_thread(tc.set_num_threads, None)
    assert set(blas_counts()) == {threads.large_product_threads()}


def make_net(seed):
    tc.manual_seed(seed)
    # conv products well below 2**26 MACs (one BLAS thread, split over images), and one linear layer of
    # 32 x 2048 x 1024 = 2**26 multiply-adds: BLAS threads
    return nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 1024),
                         nn.Tanh(), nn.Linear(1024, 10))


def batches():
    rng = np.random.default_rng(1)
    return [(tc.tensor(rng.standard_normal((32, 2, 16, 16)).astype(np.float32)), tc.tensor(rng.integers(0, 10, 32)))
            for _ in range(3)]


def train(seed, data, net=None):
    net = make_net(seed) if net is None else net
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for x, y in data:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return {k: v.data.copy() for k, v in net.state_dict().items()}


def same_bits(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a)


def test_the_network_has_products_on_both_sides_of_the_threshold():
    assert 32 * 8 * 16 * 16 * 1024 >= BIG > 32 * 8 * 16 * 16 * 2 * 9


def test_training_in_another_thread_gives_the_same_bits():
    data = batches()
    alone = train(0, data)
    assert same_bits(in_thread(train, 0, data), alone)
    with threads.num_threads(1):
        one = train(0, data)
    assert same_bits(in_thread(lambda: (tc.set_num_threads(1), train(0, data))[1]), one)


def test_two_models_trained_at_once_give_the_bits_of_each_trained_alone():
    data = batches()
    alone = [train(0, data), train(1, data)]
    results = [None, None]
    # the models are built (seeded) here: the random generator is process-wide, as PyTorch's CPU generator,
    # so two threads seeding and drawing at once would interleave their draws; training draws nothing
    nets = [[make_net(i) for _ in range(2)] for i in (0, 1)]

    def run(i):
        for net in nets[i]:             # twice: more chances to interleave
            results[i] = train(i, data, net)
    ts = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert same_bits(results[0], alone[0]) and same_bits(results[1], alone[1])


def test_below_the_threshold_the_thread_count_changes_no_bit():
    # small products (one BLAS thread), image chunks split over threads, and the Numba kernels that go parallel
    # early (batch norm from 2**22 elements, depthwise convolution from 2**18) give the same bits on 1 thread
    tc.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(16 * 64 * 64, 10))
    x = tc.randn(16, 1, 128, 128)
    y = tc.tensor(np.arange(16) % 10)
    assert 16 * 16 * 128 * 128 >= 1 << 22 and 16 * 16 * 128 * 128 * 9 < BIG and 16 * 16 * 64 * 64 * 10 < BIG

    def step():
        for p in net.parameters():
            p.grad = None
        out = net(x)
        F.cross_entropy(out, y).backward()
        return [out.numpy().copy()] + [p.grad.numpy().copy() for p in net.parameters()]
    with threads.num_threads(2):
        two = step()
    with threads.num_threads(1):
        one = step()
    assert all(np.array_equal(a, b) for a, b in zip(one, two))


def test_large_products_keep_their_count_in_a_block():
    with threads.large_products_on(1):
        with kernel_threads.gemm(BIG):
            assert set(blas_counts()) == {1}
        assert threads.large_product_threads() == 1
    with kernel_threads.gemm(BIG):
        assert set(blas_counts()) == {threads.large_product_threads()}


def fit_run(tmp_path, epochs, resume):
    data = batches() * 2
    net = make_net(3)
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    xs = np.concatenate([x.numpy() for x, _ in data])
    ys = np.concatenate([y.numpy() for _, y in data])
    loader = DataLoader(ArrayDataset(xs, ys), batch_size=32, shuffle=True, seed=4)
    test_loader = DataLoader(ArrayDataset(xs[:32], ys[:32]), batch_size=32)
    lines = []
    T.fit(net, loader, test_loader, opt, F.cross_entropy, epochs, checkpoint_dir=tmp_path, resume=resume,
          progress=False, log=lines.append)
    return {k: v.data.copy() for k, v in net.state_dict().items()}, lines


def test_resume_under_another_thread_cap_is_exact(tmp_path):
    if threads.large_product_threads() < 2:
        pytest.skip("one BLAS thread here: nothing differs")
    whole, _ = fit_run(tmp_path / "a", 2, False)
    fit_run(tmp_path / "b", 1, False)                     # epoch 1 on the default count ...
    with threads.num_threads(1):                           # ... resumed with a cap of one thread
        resumed, lines = fit_run(tmp_path / "b", 2, True)
    assert any("keep that count" in line for line in lines)
    assert same_bits(resumed, whole)
