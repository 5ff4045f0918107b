"""Containers: ``Sequential``, ``ModuleList``, ``ModuleDict`` (PyTorch's classes, keys and repr)."""
from collections import OrderedDict

from .module import Module, _format_repr


class _IndexedModules(Module):
    """Children under the keys ``"0", "1", ...``, indexable like a list (shared by Sequential and ModuleList)."""

    def _key(self, i):
        keys = list(self._modules)
        if not -len(keys) <= i < len(keys):
            raise IndexError(f"index {i} is out of range for {type(self).__name__} of length {len(keys)}")
        return keys[i]

    def __setitem__(self, i, module):
        self.add_module(self._key(i), module)

    def __delitem__(self, i):
        for key in (list(self._modules)[i] if isinstance(i, slice) else [self._key(i)]):
            del self._modules[key]
        self._renumber(list(self._modules.values()))

    def _renumber(self, modules):
        self._modules.clear()
        for j, m in enumerate(modules):
            self.add_module(str(j), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        modules = list(self._modules.values())
        modules.insert(index, module)
        self._renumber(modules)
        return self


class Sequential(_IndexedModules):
    """Modules applied in order; indexable, and built from positional modules or an ``OrderedDict``."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            for k, m in modules[0].items():
                self.add_module(k, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i):
        if isinstance(i, slice):
            return type(self)(OrderedDict(list(self._modules.items())[i]))
        return self._modules[self._key(i)]


class ModuleList(_IndexedModules):
    """A list of modules registered under keys ``0, 1, ...`` (no ``forward``: you loop over it)."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(): iterate over its modules")

    def __getitem__(self, i):
        if isinstance(i, slice):
            return type(self)(list(self._modules.values())[i])
        return self._modules[self._key(i)]

    def __iadd__(self, modules):
        return self.extend(modules)

    def __repr__(self):
        # Consecutive identical children print once: "(0-2): 3 x Block(...)", as PyTorch does.
        reprs = [repr(m) for m in self]
        groups = []
        for i, r in enumerate(reprs):
            if groups and groups[-1][2] == r:
                groups[-1][1] = i
            else:
                groups.append([i, i, r])
        lines = [(f"({a}): {r}" if a == b else f"({a}-{b}): {b - a + 1} x {r}").replace("\n", "\n  ")
                 for a, b, r in groups]
        return _format_repr(type(self).__name__, [], lines)


class ModuleDict(Module):
    """A dict of modules registered under their keys (insertion order)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __contains__(self, key):
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        """Add modules from a mapping or from ``(key, module)`` pairs."""
        for key, m in (modules.items() if hasattr(modules, "items") else modules):
            self[key] = m

    def pop(self, key):
        m = self._modules[key]
        del self[key]
        return m

    def clear(self):
        self._modules.clear()
