"""``Module`` and its containers' base, with PyTorch's semantics and state-dict key names (``Parameter``: parameter.py).

A module owns parameters (trainable tensors), buffers (state such as BatchNorm's running statistics) and
child modules, all registered by attribute assignment (``self.fc = Linear(...)``, ``self.weight =
Parameter(...)``) or by ``register_buffer``.  ``state_dict()`` lists parameters and persistent buffers under
dotted names (``features.0.weight``, ``layer1.0.bn1.running_mean``) in PyTorch's order, so weights move
between the two by name.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend
from ..core import Tensor
from .parameter import Parameter, RemovableHandle  # noqa: F401  (Parameter: also imported from here)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _check_name(owner, kind, name):
    if not isinstance(name, str):
        raise TypeError(f"{type(owner).__name__}: {kind} name should be a str, got {type(name).__name__}")
    if not name or "." in name:
        raise KeyError(f"{type(owner).__name__}: {kind} name can't be empty or contain '.', got {name!r}")


def _host_array(value):
    """A state-dict value (tinyconv Tensor, NumPy/CuPy array, torch tensor, number) as an array."""
    if isinstance(value, Tensor):
        return value.data
    if backend.is_array(value):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor (torchvision weights)
        return value.detach().cpu().numpy()
    return np.asarray(value)


class Module:
    """Base class of every layer and network.  Subclasses define ``forward``; call the module to run it."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration -------------------------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() was called "
                                 f"(call super().__init__() first in {type(self).__name__}.__init__)")
        if isinstance(value, Parameter):
            self._forget(name, keep=self._parameters)
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self._forget(name, keep=self._modules)
            self._modules[name] = value
        elif name in self._parameters:
            if value is not None:
                raise TypeError(f"{type(self).__name__}: cannot assign a {type(value).__name__} as parameter "
                                f"{name!r} (a Parameter or None expected)")
            self._parameters[name] = None
        elif name in self._modules:
            if value is not None:
                raise TypeError(f"{type(self).__name__}: cannot assign a {type(value).__name__} as child module "
                                f"{name!r} (a Module or None expected)")
            self._modules[name] = None
        elif name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                if not backend.is_array(value):
                    raise TypeError(f"{type(self).__name__}: cannot assign a {type(value).__name__} as buffer "
                                    f"{name!r} (a Tensor, an array or None expected)")
                value = Tensor(value)
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name, keep=None):
        """Remove ``name`` from the attributes and every store but ``keep`` (whose entry keeps its position)."""
        self.__dict__.pop(name, None)
        for store in (self._parameters, self._buffers, self._modules):
            if store is not keep:
                store.pop(name, None)
        if keep is not self._buffers:
            self._non_persistent.discard(name)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if name in self._parameters or name in self._buffers or name in self._modules:
            self._forget(name)
        else:
            object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Register a ``Parameter`` (or ``None``: an optional parameter that is absent, e.g. ``bias=False``)."""
        _check_name(self, "parameter", name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"{type(self).__name__}: cannot register a {type(param).__name__} as parameter "
                            f"{name!r} (a Parameter or None expected)")
        if name in self.__dict__ or name in self._buffers or name in self._modules:
            raise KeyError(f"{type(self).__name__}: attribute {name!r} already exists")
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Register non-trainable state; it follows ``.to()`` and is saved in ``state_dict`` if ``persistent``."""
        _check_name(self, "buffer", name)
        if name in self.__dict__ or name in self._parameters or name in self._modules:
            raise KeyError(f"{type(self).__name__}: attribute {name!r} already exists")
        self._buffers[name] = tensor if tensor is None or isinstance(tensor, Tensor) else Tensor(tensor)
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        """Register ``module`` (or ``None``) as a child under ``name``."""
        _check_name(self, "module", str(name))
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: {type(module).__name__} is not a Module")
        name = str(name)  # an existing child of that name is replaced in place
        if name in self.__dict__ or name in self._parameters or name in self._buffers:
            raise KeyError(f"{type(self).__name__}: attribute {name!r} already exists")
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target):
        """The module at dotted path ``target`` (``"layer1.0.conv1"``); ``""`` is this module."""
        m = self
        for part in target.split(".") if target else []:
            child = m._modules.get(part) if isinstance(m, Module) else None
            if child is None:
                raise AttributeError(f"{type(m).__name__} has no submodule {part!r} (looking up {target!r})")
            m = child
        return m

    def get_parameter(self, target):
        """The parameter at dotted path ``target`` (``"layer1.0.conv1.weight"``)."""
        mod_path, _, name = target.rpartition(".")
        m = self.get_submodule(mod_path)
        if m._parameters.get(name) is None:
            raise AttributeError(f"{type(m).__name__} has no parameter {name!r} (looking up {target!r})")
        return m._parameters[name]

    # -- running ------------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        """The computation; called through ``module(x)`` (which also runs the hooks)."""
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        d = self.__dict__
        pre, post = d.get("_forward_pre_hooks"), d.get("_forward_hooks")
        if not pre and not post:  # the usual case, kept quick: this runs for every module of every step
            return self.forward(*args, **kwargs)
        for hook in list(pre.values()) if pre else ():
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        out = self.forward(*args, **kwargs)
        for hook in list(post.values()) if post else ():
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_pre_hook(self, hook):
        """``hook(module, args)`` runs before ``forward``; returning non-None replaces the inputs."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook):
        """``hook(module, args, output)`` runs after ``forward`` (e.g. to record activations for
        visualisation); returning non-None replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def train(self, mode=True):
        """Set training mode (dropout active, batch statistics) on this module and its children; returns self."""
        if not isinstance(mode, bool):
            raise ValueError(f"{type(self).__name__}.train: mode should be a bool, got {mode!r}")
        object.__setattr__(self, "training", mode)
        for m in self.children():
            m.train(mode)
        return self

    def eval(self):
        """Evaluation mode (``train(False)``); returns self."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (``False``) or unfreeze every parameter, e.g. a pretrained backbone; returns self."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    # -- iteration ----------------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """``(dotted_name, module)`` for this module and every descendant, pre-order depth first.

        A module reachable along several paths is yielded once (first path) unless ``remove_duplicate=False``.
        """
        memo = set() if memo is None else memo
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if remove_duplicate:
                if id(m) in memo:
                    continue
                memo.add(id(m))
            yield name, m
            children = [(f"{name}.{k}" if name else k, c) for k, c in m._modules.items() if c is not None]
            stack.extend(reversed(children))

    def modules(self):
        """This module and every descendant, each once."""
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        """``(name, module)`` of the direct children (each module once)."""
        seen = set()
        for k, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield k, m

    def children(self):
        """The direct child modules, each once."""
        for _, m in self.named_children():
            yield m

    def _named_members(self, store, prefix, recurse, remove_duplicate):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mname, m in mods:
            for k, t in getattr(m, store).items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield (f"{mname}.{k}" if mname else k), t

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """``(dotted_name, Parameter)`` pairs; a parameter shared by several modules appears once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        """Every parameter once (what an optimizer takes): ``SGD(model.parameters(), lr=0.1)``."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        """``(dotted_name, Tensor)`` pairs of buffers, persistent or not."""
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        """Every buffer once."""
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call ``fn`` on every submodule, children before parents (post-order, as PyTorch), then on self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def zero_grad(self, set_to_none=True):
        """Forget the parameters' gradients (``None``, or zero-filled with ``set_to_none=False``)."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.data[...] = 0

    # -- devices and dtypes -------------------------------------------------------------------------
    def _map_tensors(self, fn):
        for m in self.modules():
            for store in (m._parameters, m._buffers):
                for t in store.values():
                    if t is None:
                        continue
                    t.data = fn(t.data)
                    if t.grad is not None:
                        t.grad = Tensor(fn(t.grad.data))
        return self

    def to(self, device=None, dtype=None):
        """Move parameters and buffers to ``device`` and/or cast floating ones to ``dtype``, in place.

        The ``Parameter`` objects stay the same (only their arrays change), so an optimizer built before
        still holds them; ``model.to(np.float64)`` (a dtype in first position) casts only.
        """
        if isinstance(device, (type, np.dtype)):
            device, dtype = None, device
        if device is not None:
            device = backend.normalize_device(device)
            backend.xp_for(device)  # a clear error when CUDA is unavailable
            self._map_tensors(lambda a: backend.to_device(a, device))
        if dtype is not None:
            if np.dtype(dtype).kind == "f" and np.dtype(dtype).itemsize < 4:
                raise TypeError(f"{type(self).__name__}.to({np.dtype(dtype)}): tinyconv computes in float32 and "
                                f"float64 only (half precision is not computed); use tinyconv.float32 or float64")
            self._map_tensors(lambda a: a.astype(dtype) if a.dtype.kind == "f" else a)
        return self

    def cpu(self):
        """``to("cpu")``."""
        return self.to("cpu")

    def cuda(self):
        """``to("cuda")``."""
        return self.to("cuda")

    def float(self):
        """Cast floating parameters and buffers to float32."""
        return self.to(dtype=np.float32)

    def double(self):
        """Cast floating parameters and buffers to float64."""
        return self.to(dtype=np.float64)

    def half(self):
        """Refused: tinyconv does not compute in float16 (the error names float32 and float64)."""
        return self.to(dtype=np.float16)

    # -- state dict ---------------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Ordered ``{dotted_name: Tensor}`` of parameters and persistent buffers, PyTorch's keys and order.

        Each module lists its own parameters, then its buffers, then its children's entries.  Shared
        parameters appear under every name (as in PyTorch).  Values are ``detach()``-ed tensors sharing
        the arrays (the ``Parameter`` objects themselves with ``keep_vars=True``).
        """
        out = OrderedDict() if destination is None else destination
        for k, p in self._parameters.items():
            if p is not None:
                out[prefix + k] = p if keep_vars else p.detach()
        for k, b in self._buffers.items():
            if b is not None and k not in self._non_persistent:
                out[prefix + k] = b if keep_vars else b.detach()
        for k, m in self._modules.items():
            if m is not None:
                m.state_dict(destination=out, prefix=f"{prefix}{k}.", keep_vars=keep_vars)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into this module's parameters and buffers by name (in place, cast to their dtype).

        Values may be tinyconv Tensors, NumPy/CuPy arrays or torch tensors.  A shape mismatch always
        raises; with ``strict`` (default) missing and unexpected keys raise too.  The error names every
        offending key, and nothing is copied when it is raised.  Returns ``(missing_keys, unexpected_keys)``.
        """
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        values, mismatched = {}, []
        for k, v in state_dict.items():
            if k in own:
                values[k] = _host_array(v)
                if tuple(values[k].shape) != own[k].shape:
                    mismatched.append(f"size mismatch for {k}: copying a param with shape {tuple(values[k].shape)} "
                                      f"from checkpoint, the shape in current model is {own[k].shape}.")
        problems = []
        if strict and missing:
            problems.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        if strict and unexpected:
            problems.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        problems += mismatched
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(problems))
        for k, src in values.items():
            t = own[k]
            xp = backend.get_array_module(t.data)
            if backend.device_of(src) != t.device:
                src = backend.to_device(src, t.device)
            t.data[...] = xp.asarray(src).astype(t.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # -- printing -----------------------------------------------------------------------------------
    def extra_repr(self):
        """The text inside ``Name(...)`` of this module's repr (its hyper-parameters); override in layers."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._modules.items()]
        return _format_repr(type(self).__name__, extra_lines, child_lines)


def _format_repr(name, extra_lines, child_lines):
    lines = extra_lines + child_lines
    if not lines:
        return name + "()"
    if len(extra_lines) == 1 and not child_lines:
        return f"{name}({extra_lines[0]})"
    return f"{name}(\n  " + "\n  ".join(lines) + "\n)"
