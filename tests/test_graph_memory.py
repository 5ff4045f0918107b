"""What the recorded graph keeps of a function's inputs (graph.py, ``hold_inputs``): leaves and viewed inputs as
tensors, any other input weakly, so an intermediate array that no backward needs is freed during the forward
pass, as in PyTorch; and the checks that used to read those tensors still work once they are gone."""
import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import tinyconv as tc
from tinyconv.graph import GoneInput, WeakInput


def _leaf(*shape):
    return tc.tensor(np.random.default_rng(0).standard_normal(shape), requires_grad=True)


def test_an_intermediate_nobody_holds_is_freed_and_the_gradient_is_unchanged():
    x = _leaf(3, 4)
    a = x * 2.0                       # Mul's output, read only by Exp, which saves its own output
    arr = weakref.ref(a.data)
    y = a.exp()
    assert type(y._ctx._held[0]) is WeakInput and y._ctx.inputs[0] is a  # found while held
    del a
    gc.collect()
    assert arr() is None               # freed before backward
    gone = y._ctx.inputs[0]
    assert isinstance(gone, GoneInput) and gone.shape == (3, 4) and gone.dtype == np.float64
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2.0 * np.exp(2.0 * x.numpy()))


def test_leaves_and_viewed_inputs_are_held_as_tensors():
    x = _leaf(4, 5)
    a = x * 1.0
    v = a[1:3]                         # a view: Slice holds a, which costs no memory
    assert v._ctx._held[0] is a and (x * a)._ctx._held[0] is x
    del a
    gc.collect()
    with pytest.raises(RuntimeError, match="is a view of the input of"):
        v[0] = 0.0                     # still refused: the write would change a behind autograd's back


def test_a_gone_input_written_in_place_while_it_lived_still_refuses_backward():
    x = _leaf(2, 3)
    a = x * 2.0
    y = a * x                          # Mul saves a's array
    with tc.no_grad():
        a.zero_()                      # version 1; then nobody holds a
    del a
    gc.collect()
    assert isinstance(y._ctx.inputs[0], GoneInput)
    with pytest.raises(RuntimeError, match=r"input 0 of Mul, of shape \(2, 3\), is at version 1; "
                                           r"expected version 0"):
        y.sum().backward()


def test_a_gone_input_whose_memory_nothing_saved_may_have_been_written():
    x = _leaf(2, 3)
    a = x * 2.0
    y = a.exp()                        # Exp saves its output, not a
    with tc.no_grad():
        a.zero_()
    del a
    gc.collect()
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2.0 * np.exp(2.0 * x.numpy()))


def test_retain_grad_on_a_held_intermediate_still_works():
    x = _leaf(3)
    a = (x * 3.0).retain_grad()
    (a * a).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 2 * a.numpy())


def test_a_tensor_read_by_many_graphs_keeps_few_records():
    x = _leaf(4)
    a = x * 2.0
    for _ in range(50):
        (a * 3.0).sum().backward(retain_graph=True)
    assert len(a._weak_uses) <= 9


def test_forward_memory_of_a_chain_is_what_backward_needs():
    """A chain of 20 ``y = (x * c).exp()`` steps: Mul's output is read only by Exp (which saves its output), so
    the forward pass keeps one array per step, not two."""
    x = _leaf(256, 256)
    n_bytes = 256 * 256 * 8
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        y = x
        for _ in range(20):
            y = (y * 0.01).exp()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert held < 24 * n_bytes, held / n_bytes   # 20 saved outputs (+ slack), not 40
    y.sum().backward()
    assert x.grad is not None


def test_a_tensor_read_many_times_in_one_graph_prunes_its_records_rarely():
    x = _leaf(3)
    a = x * 2.0
    total = a * 1.0
    for i in range(2, 201):
        total = total + a * float(i)           # 200 live readers of a: its records all stay
    assert len(a._weak_uses) == 200 and a._weak_uses.prune_at == 256
    total.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 2.0 * sum(range(1, 201))))
