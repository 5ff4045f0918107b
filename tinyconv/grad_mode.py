"""Grad mode: whether operations record the autograd graph (``no_grad``, ``enable_grad``, ``inference_mode``,
``set_grad_enabled``).

The mode is context-local, like tinyconv's other modes (``backend.use_kernels``, ``summary``'s shape-only
counting): a ``contextvars`` variable, so each thread (and each asyncio task) has its own, and a ``no_grad()``
in one thread never changes what another records.  A new thread starts with recording on.
"""
import contextlib
import contextvars

_enabled = contextvars.ContextVar("tinyconv_grad_enabled", default=True)


def is_grad_enabled():
    """True unless inside ``no_grad()``."""
    return _enabled.get()


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled):
        self.enabled = enabled
        self.tokens = []  # a stack, so one instance may be entered again while active

    def _recreate_cm(self):
        # as a decorator: a fresh context per call (recursion and threads each keep their own state)
        return _GradMode(self.enabled)

    def __enter__(self):
        self.tokens.append(_enabled.set(self.enabled))

    def __exit__(self, *exc):
        _enabled.reset(self.tokens.pop())
        return False


def no_grad(fn=None):
    """Disable graph recording (evaluation, optimiser updates).

    A context manager (``with no_grad(): ...``) and a decorator, with or without parentheses
    (``@no_grad()`` or ``@no_grad``).  Operations inside produce tensors with ``requires_grad=False``.
    """
    mode = _GradMode(False)
    return mode(fn) if callable(fn) else mode


def enable_grad(fn=None):
    """Re-enable graph recording inside ``no_grad`` (context manager or decorator, as ``no_grad``)."""
    mode = _GradMode(True)
    return mode(fn) if callable(fn) else mode


def inference_mode(mode=True):
    """PyTorch's faster ``no_grad`` for inference; here the same as ``no_grad()`` (tinyconv has no separate
    inference tensors).  ``inference_mode(False)`` records as usual.  Context manager or decorator."""
    if callable(mode):  # @inference_mode without parentheses
        return _GradMode(False)(mode)
    return _GradMode(not mode)


class set_grad_enabled(_GradMode):
    """Turn graph recording on or off, as ``torch.set_grad_enabled``: called as a function it sets the mode
    at once (``set_grad_enabled(False)``); as a context manager (``with set_grad_enabled(is_train):``) or a
    decorator it restores the previous mode on exit.  The mode is per thread (context-local)."""

    def __init__(self, mode):
        super().__init__(bool(mode))
        self._prev_at_call = is_grad_enabled()
        _enabled.set(self.enabled)

    def __enter__(self):
        # the call already set the mode; on exit, the mode from before the call comes back
        self.tokens.append(_enabled.set(self.enabled))

    def __exit__(self, *exc):
        _enabled.reset(self.tokens.pop())
        _enabled.set(self._prev_at_call)
        return False

    def __call__(self, fn):
        _enabled.set(self._prev_at_call)  # as a decorator it changes nothing until fn runs
        return super().__call__(fn)
