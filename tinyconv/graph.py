"""The graph walk of ``Tensor.backward`` (core.py), apart from the loop itself: the order in which functions are
visited, the check that saved inputs were not written in place since, and which gradient arrays a leaf may take
as its ``.grad`` without a copy.  Functions here read the graph's attributes; they import nothing of tinyconv
but ``backend``.
"""
from . import backend


class GradOwnership:
    """Which gradient arrays a leaf may keep as its ``.grad`` as they are, without a copy (an optimisation).

    ``.grad`` must be an array nobody else holds, since optimisers and users change it in place.  A gradient
    computed in backward usually is one: a fresh array that the pass hands to one leaf only.  But an array may
    also be seen elsewhere: the caller's ``grad``, an array passed to a ``backward`` (which may return it, or
    a view of it, for several inputs), one routed to another function or already given to another input, or a
    buffer the function saved.  ``seen`` records the ids of every array of the first kinds; ``may_own`` says
    yes only for a fresh array (not a view) that is none of them.  Copying always would be correct too: this
    saves one copy of every parameter's gradient per step.
    """

    def __init__(self, seed):
        self.shared = {id(seed)}  # the caller's gradient

    def seen(self, arrays):
        """Record arrays that something else may now hold."""
        self.shared.update(id(a) for a in arrays)

    def may_own(self, f, gx):
        """Whether a leaf may take ``gx``, returned by ``f.backward``, as its ``.grad`` without copying it."""
        return gx.base is None and id(gx) not in self.shared and not saves_memory_of(f, gx)


def saved_arrays(f):
    """The arrays ``f.forward`` saved (attributes, and arrays inside saved tuples and lists)."""
    for k in getattr(f, "_saved", ()):
        v = f.__dict__.get(k)
        for a in (v if isinstance(v, (tuple, list)) else (v,)):
            if backend.is_array(a):
                yield a


def may_share_memory(a, b):
    """Whether arrays ``a`` and ``b`` may overlap (NumPy's or CuPy's bounds test; identity where missing)."""
    if a is b:
        return True
    may_share = getattr(backend.get_array_module(a), "may_share_memory", None)
    return type(a) is type(b) and may_share is not None and bool(may_share(a, b))


def saves_memory_of(f, arr):
    """Whether a buffer saved by ``f`` shares memory with ``arr`` (so writing ``arr`` corrupts it)."""
    return any(may_share_memory(a, arr) for a in saved_arrays(f))


def check_versions(f):
    """Refuse to back-propagate through ``f`` when a tensor it saved was written in place since."""
    if f.overwritten is not None:
        raise RuntimeError(f"backward(): {f.overwritten}")
    for i, (x, v) in enumerate(zip(f.inputs, f.versions)):
        if x is not None and x._version != v and saves_memory_of(f, x.data):
            raise RuntimeError(
                f"backward(): one of the tensors needed for gradient computation has been modified by an "
                f"in-place operation: input {i} of {type(f).__name__}, of shape {x.shape}, is at version "
                f"{x._version}; expected version {v}. Write into a copy (x = x.clone()) before the "
                f"in-place operation, or do it before using x.")


def topological_order(root):
    """The functions reachable from ``root``, each listed after every function that consumes its outputs.

    Kahn's algorithm, without recursion: count each function's consumers inside the graph, then release a
    function once all of them have passed it their gradient.
    """
    pending, stack = {root: 0}, [root]
    while stack:
        f = stack.pop()
        if f._freed:
            raise RuntimeError(f"backward(): trying to backward through {type(f).__name__} a second time, "
                               "but its saved buffers were freed; call backward(retain_graph=True) "
                               "the first time")
        for edge in f.edges:
            g = None if edge is None else edge[0]
            if g is not None:
                if g not in pending:
                    pending[g] = 0
                    stack.append(g)
                pending[g] += 1
    order, ready = [], [root]
    while ready:
        f = ready.pop()
        order.append(f)
        for edge in f.edges:
            g = None if edge is None else edge[0]
            if g is not None:
                pending[g] -= 1
                if pending[g] == 0:
                    ready.append(g)
    return order
