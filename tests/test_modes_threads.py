"""Modes are scoped, never process-global: ``summary()``'s shape-only counting, the kernel choice
(``backend.use_kernels``) and ``nn.init.skip_init`` in one thread never change what another thread computes."""
import threading

import numpy as np

import tinyconv
from tinyconv import backend, models, nn
from tinyconv.nn import init


def _run_beside(background, foreground):
    """Run ``background()`` in a thread until ``foreground()`` (in this thread) returns; re-raise its error."""
    stop, errors = threading.Event(), []

    def loop():
        try:
            while not stop.is_set():
                background()
        except BaseException as e:  # noqa: BLE001 - reported in the main thread
            errors.append(e)
    t = threading.Thread(target=loop)
    t.start()
    try:
        return foreground()
    finally:
        stop.set()
        t.join()
        assert not errors, errors


def test_summary_in_one_thread_leaves_another_threads_forward_and_training_alone():
    tinyconv.manual_seed(0)
    model = models.lenet5()
    x = tinyconv.randn(4, 1, 32, 32)
    with tinyconv.no_grad():
        expected = model(x).data.copy()
    other = models.lenet5()

    def forward_passes():
        outs = []
        for _ in range(200):
            with tinyconv.no_grad():
                outs.append(model(x).data)
        return outs
    outs = _run_beside(lambda: tinyconv.summary(other, (1, 32, 32)), forward_passes)
    wrong = sum(not np.array_equal(o, expected) for o in outs)
    assert wrong == 0, f"{wrong} of {len(outs)} forward passes differ while summary() ran in another thread"

    def train():  # a few SGD steps; the loss must fall as it does alone
        tinyconv.manual_seed(1)
        net = models.lenet5()
        opt = tinyconv.optim.SGD(net.parameters(), lr=0.05)
        y = tinyconv.Tensor(np.arange(4) % 10)
        losses = []
        for _ in range(10):
            loss = tinyconv.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
        return losses
    alone = train()
    beside = _run_beside(lambda: tinyconv.summary(other, (1, 32, 32)), train)
    assert beside == alone


def test_kernel_mode_and_skip_init_are_local_to_the_thread_that_set_them():
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def other():
        with backend.use_kernels("numpy"), init.skip_init():
            entered.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    entered.wait(10)
    try:
        seen["mode"] = backend.kernel_mode()
        tinyconv.manual_seed(0)
        seen["weights"] = nn.Linear(3, 2).weight.data.copy()
    finally:
        release.set()
        t.join()
    assert seen["mode"] != "numpy" or backend.kernel_mode() == "numpy"
    tinyconv.manual_seed(0)
    assert np.array_equal(seen["weights"], nn.Linear(3, 2).weight.data)
    assert np.any(seen["weights"] != 0)


def test_grad_mode_is_per_thread_and_set_grad_enabled_restores_it():
    import threading
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def other():
        with tinyconv.no_grad():
            inside.set()
            release.wait(5)
            seen["other"] = tinyconv.is_grad_enabled()
        tinyconv.set_grad_enabled(False)  # as a call: stays set, in this thread only
        seen["other after"] = tinyconv.is_grad_enabled()

    t = threading.Thread(target=other)
    t.start()
    inside.wait(5)
    x = tinyconv.ones(3, requires_grad=True)
    seen["main"] = (x * 2).requires_grad  # the other thread's no_grad does not reach this one
    release.set()
    t.join()
    assert seen == {"main": True, "other": False, "other after": False}
    assert tinyconv.is_grad_enabled()
    with tinyconv.set_grad_enabled(False):
        assert not tinyconv.is_grad_enabled()
    assert tinyconv.is_grad_enabled()
