"""Optimiser update rules fused into one pass over a parameter, in place (no temporaries).

``sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first)``: PyTorch's SGD on
arrays of one shape, updating ``p`` (and the momentum buffer ``buf``, or ``None`` without momentum) in place::

    g <- -g if maximize;   g <- g + weight_decay * p                     (when weight_decay != 0)
    buf <- g (first step)  or  buf * momentum + (1 - dampening) * g     (when momentum != 0)
    d <- g + momentum * buf if nesterov else buf   (g without momentum);   p <- p - lr * d

The NumPy reference does this line by line (one temporary per line, over blocks of at most 2**16 elements of
C-contiguous arrays), on any layout; the Numba kernels read p, g and buf once and write p and buf once, on every
core, for C-contiguous floating arrays of one dtype (the CPU twin runs the reference on anything else; the CUDA
twin refuses it: a GPU parameter, its gradient and its buffer are always made contiguous).  The scalars are cast
to the arrays' dtype first, and each line rounds as NumPy's does (no fused multiply-adds), so all three give
the same bits.
"""
import numpy as np
from numba import cuda, njit, prange

_THREADS = 256


def _scalars(p, lr, momentum, dampening, weight_decay):
    t = p.dtype.type
    return t(lr), t(momentum), t(1 - dampening), t(weight_decay)


# -- NumPy reference ----------------------------------------------------------------------------------
_BLOCK = 1 << 16  # elements: the reference's temporaries are one block each, not one parameter each


def sgd_step_numpy(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    """The update line by line (see the module docstring), on blocks of the flattened arrays, so that a line's
    temporary holds one block rather than a whole parameter; arrays that are not C-contiguous go whole."""
    if p.size <= _BLOCK or not all(a.flags.c_contiguous for a in (p, g, buf) if a is not None):
        return _sgd_lines(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first)
    flat = [None if a is None else a.reshape(-1) for a in (p, g, buf)]
    for i in range(0, p.size, _BLOCK):
        _sgd_lines(*(None if a is None else a[i:i + _BLOCK] for a in flat), lr, momentum, dampening,
                   weight_decay, nesterov, maximize, first)


def _sgd_lines(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    lr, momentum, damp, weight_decay = _scalars(p, lr, momentum, dampening, weight_decay)
    g = -g if maximize else g
    if weight_decay != 0:
        g = g + weight_decay * p
    if buf is not None:
        if first:
            buf[...] = g
        else:
            buf *= momentum
            buf += damp * g
        g = g + momentum * buf if nesterov else buf
    p -= lr * g


# -- Numba CPU and numba.cuda: one element's update, compiled for each ----------------------------------------
def _sgd_element(p, g, buf, i, has_buf, lr, momentum, damp, weight_decay, nesterov, maximize, first):
    d = -g[i] if maximize else g[i]
    if weight_decay != 0:
        d = d + weight_decay * p[i]
    if has_buf:
        b = d if first else buf[i] * momentum + damp * d
        buf[i] = b
        d = d + momentum * b if nesterov else b
    p[i] = p[i] - lr * d


_sgd_element_cpu = njit(inline="always")(_sgd_element)
_sgd_element_cuda = cuda.jit(device=True)(_sgd_element)


@njit(parallel=True, cache=True)
def _sgd_cpu(p, g, buf, has_buf, lr, momentum, damp, weight_decay, nesterov, maximize, first):
    for i in prange(p.size):
        _sgd_element_cpu(p, g, buf, i, has_buf, lr, momentum, damp, weight_decay, nesterov, maximize, first)


def _fusable(p, *arrays):
    """Whether the fused kernels take these arrays: C-contiguous, floating, all of p's dtype."""
    return p.dtype.kind == "f" and all(a is None or (a.dtype == p.dtype and a.flags.c_contiguous)
                                       for a in (p,) + arrays)


def sgd_step_cpu(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    """One parallel pass over ``p``, ``g``, ``buf`` (the reference for layouts the kernel does not take)."""
    if not (isinstance(p, np.ndarray) and _fusable(p, g, buf)):
        return sgd_step_numpy(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first)
    lr, momentum, damp, weight_decay = _scalars(p, lr, momentum, dampening, weight_decay)
    _sgd_cpu(p.reshape(-1), g.reshape(-1), (p if buf is None else buf).reshape(-1), buf is not None, lr,
             momentum, damp, weight_decay, bool(nesterov), bool(maximize), bool(first))


@cuda.jit
def _sgd_kernel(p, g, buf, has_buf, lr, momentum, damp, weight_decay, nesterov, maximize, first):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):  # one thread per element
        _sgd_element_cuda(p, g, buf, i, has_buf, lr, momentum, damp, weight_decay, nesterov, maximize, first)


def sgd_step_cuda(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    """CUDA: one thread per element, the same arithmetic."""
    flat = [None if a is None else a.reshape(-1) for a in (p, g, buf)]  # raises on a non-contiguous array
    lr, momentum, damp, weight_decay = _scalars(p, lr, momentum, dampening, weight_decay)
    blocks = max(1, min((p.size + _THREADS - 1) // _THREADS, 65535 * 16))
    _sgd_kernel[blocks, _THREADS](flat[0], flat[1], flat[0] if buf is None else flat[2], buf is not None, lr,
                                  momentum, damp, weight_decay, bool(nesterov), bool(maximize), bool(first))
