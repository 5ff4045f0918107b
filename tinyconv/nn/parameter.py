"""``Parameter`` (a tensor a ``Module`` registers as trainable) and ``RemovableHandle`` (what hook registration
returns)."""
from ..core import Tensor


class Parameter(Tensor):
    """A tensor that a ``Module`` registers as trainable (``requires_grad=True`` by default)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class RemovableHandle:
    """Returned by ``register_forward_hook``; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks):
        self.hooks, self.id = hooks, RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self):
        self.hooks.pop(self.id, None)
