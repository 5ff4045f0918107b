"""Recomputation (gradient checkpointing): keep a function's input, not its intermediates, and run it again in
backward (Chen et al., "Training deep nets with sublinear memory cost", 2016; ``torch.utils.checkpoint``).

    y = fn(x)                    forward: run without recording a graph; save x only
    dx = d(fn)/dx^T dY           backward: run fn(x) again, recording, and back-propagate dY through it

The parameters used inside ``fn`` receive their gradients during that second run.  ``fn`` must compute the
same thing twice (no dropout inside).  DenseNet's ``memory_efficient`` blocks recompute their bottlenecks.
"""
import contextlib

from ..core import Function, Tensor, enable_grad, no_grad


class Recompute(Function):
    """``y = fn(x)`` keeping only ``x``; hyper-parameters ``fn`` and ``keep`` (tensors whose values the second
    run must not change, such as a batch norm's running statistics: restored after it)."""

    def forward(self, x):
        self.x = x  # saved for backward: the input alone
        with no_grad():
            return self.fn(Tensor(x)).data

    def backward(self, gy):
        x = Tensor(self.x, requires_grad=True)
        with enable_grad(), _restored(self.keep):
            y = self.fn(x)
        y.backward(gy)
        return x.grad.data


@contextlib.contextmanager
def _restored(tensors):
    saved = [t.data.copy() for t in tensors]
    try:
        yield
    finally:
        for t, v in zip(tensors, saved):
            t.data[...] = v


def recompute(fn, x, keep=()):
    """``fn(x)``, its intermediates recomputed in backward instead of kept; ``keep``: tensors (buffers) restored
    after the recomputation, so that state updated by ``fn`` is updated once per step."""
    return Recompute.apply(x, fn=fn, keep=tuple(keep))
