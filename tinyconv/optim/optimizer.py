"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad``/``step`` and resumable state dicts.

An optimizer holds ``param_groups``, a list of dicts: ``{"params": [Parameter, ...], "lr": ..., ...}``, each
with its own hyper-parameters (missing ones are filled from the optimizer's defaults), so e.g. a pretrained
backbone and a fresh classifier can train with different learning rates.  ``state[p]`` holds what the
update rule remembers for parameter ``p`` (momentum buffers, running averages, a step count): NumPy or CuPy
arrays on ``p``'s device and in ``p``'s dtype, created on the parameter's first update.

Updates work on the raw arrays (``p.data``, ``p.grad.data``) in place: nothing is recorded in the autograd
graph, nothing is copied between host and GPU.  Parameters whose ``grad`` is ``None`` are skipped.  Each
rule runs block by block over the flattened arrays (``blockwise``), so its temporaries (``lr * g``,
``g * g``, ...) have the size of a block, not of the parameter.

State dict (PyTorch's layout, arrays in place of tensors)::

    {"state": {0: {"step": 3, "exp_avg": array, "exp_avg_sq": array},   # only updated parameters appear
               1: {...}, ...},
     "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), ..., "params": [0, 1]},
                      {"lr": 0.01, ..., "params": [2, 3, 4]}]}

Parameters are numbered 0, 1, 2, ... across the groups in order.  State values are arrays (the optimizer's
live arrays, not copies; NumPy or CuPy) or Python numbers (``"step"`` is an ``int``); group values are
Python numbers, bools, tuples and the index lists.  ``load_state_dict`` copies the arrays onto each
parameter's device and casts floating ones to its dtype, and accepts keys that came back as strings.
``tinyconv.checkpoint.save`` stores such a dict in an ``.npz`` file (arrays as members, the rest as JSON).
"""
import numpy as np

from .. import backend
from ..core import Tensor, enable_grad

# Elements per block of ``blockwise`` (on the GPU, larger blocks: fewer kernel launches).  A rule written on
# whole arrays allocates a parameter-sized temporary per operation: VGG-11's first classifier layer has
# 103M weights, and SGD's ``lr * g`` for it (411 MB) was on top of the memory peak of a training step.
BLOCK = 1 << 16
GPU_BLOCK = 1 << 22


def l2_gradient(p, grad, weight_decay, maximize):
    """The direction the coupled-decay rules use: ``g = +-grad + weight_decay * p`` (the L2 penalty folded
    into the gradient; ``-grad`` when maximising).  A new array only where it differs from ``grad``."""
    g = -grad if maximize else grad
    return g + weight_decay * p if weight_decay != 0 else g


def blockwise(rule, *arrays):
    """``rule(*blocks)`` on matching blocks of the flattened ``arrays`` (same shape; ``None`` passes through).

    The rule updates its blocks in place, which are views: the arrays are updated.  It does the same
    arithmetic as on whole arrays, so the results are the same bit for bit.  Arrays that are not
    C-contiguous (a parameter made from a transposed array, say) are handed over whole.
    """
    present = [a for a in arrays if a is not None]
    size = present[0].size
    block = BLOCK if backend.get_array_module(present[0]) is np else GPU_BLOCK
    if size <= block or not all(a.flags.c_contiguous for a in present):
        rule(*arrays)
        return
    flat = [None if a is None else a.reshape(-1) for a in arrays]
    for i in range(0, size, block):
        rule(*(None if a is None else a[i:i + block] for a in flat))


class Optimizer:
    """Base class: subclasses pass their ``defaults`` and implement ``_update(p, grad, state, group)``."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params should be an iterable of Tensors or dicts, "
                            "got a single Tensor (wrap it in a list)")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Add ``{"params": [...], hyper-parameter: value, ...}``; unspecified hyper-parameters take defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__} can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: can't optimize a non-leaf Tensor")
        new_ids = [id(p) for p in params]
        if len(set(new_ids)) != len(new_ids):
            raise ValueError(f"{type(self).__name__}: a parameter group contains the same parameter twice")
        old_ids = {id(p) for g in self.param_groups for p in g["params"]}
        if old_ids.intersection(new_ids):
            raise ValueError(f"{type(self).__name__}: some parameters appear in more than one parameter group")
        group = dict(param_group, params=params)
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Forget the gradients: ``grad = None`` (default, frees memory) or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    def step(self, closure=None):
        """One update of every parameter that has a gradient.

        ``closure``, if given, re-evaluates the model and returns the loss (it runs with gradients enabled);
        its loss is returned.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad.data, self.state.setdefault(p, {}), group)
                    p._version += 1   # an in-place write: a graph that saved p now refuses to back-propagate
        return loss

    def _update(self, p, grad, state, group):
        """Update ``p.data`` in place from ``grad`` (an array), ``state`` (a dict) and ``group``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _update")

    # -- saving and resuming ------------------------------------------------------------------------
    def state_dict(self):
        """``{"state": {index: {name: value}}, "param_groups": [...]}`` (see the module docstring)."""
        index, groups = {}, []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if s and id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Resume from ``state_dict()`` of an optimizer built on the same parameters in the same order.

        Hyper-parameters come from the saved groups; state arrays are copied onto each parameter's device
        (floating ones cast to its dtype).
        """
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state dict has {len(saved)} parameter "
                             f"groups, the optimizer has {len(self.param_groups)}")
        for i, (group, s) in enumerate(zip(self.param_groups, saved)):
            if len(group["params"]) != len(s["params"]):
                raise ValueError(f"{type(self).__name__}.load_state_dict: parameter group {i} has "
                                 f"{len(s['params'])} parameters in the state dict, {len(group['params'])} "
                                 "in the optimizer")
        by_index = {int(i): p for group, s in zip(self.param_groups, saved)
                    for i, p in zip(s["params"], group["params"])}
        state = {}
        for i, values in state_dict["state"].items():
            if int(i) not in by_index:
                raise ValueError(f"{type(self).__name__}.load_state_dict: state for parameter {i}, "
                                 "which no parameter group lists")
            p = by_index[int(i)]
            state[p] = {name: _state_value_for(p, name, v) for name, v in values.items()}
        self.state = state
        self.param_groups = [dict({k: v for k, v in s.items() if k != "params"}, params=group["params"])
                             for group, s in zip(self.param_groups, saved)]

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def _state_value_for(p, name, value):
    """A fresh copy of a saved state value, on ``p``'s device; floating arrays in ``p``'s dtype."""
    if isinstance(value, Tensor):
        value = value.data
    if not backend.is_array(value):
        return value
    if name == "step":
        return int(value)
    xp = backend.get_array_module(p.data)
    dtype = p.dtype if value.dtype.kind == "f" else value.dtype
    return xp.array(backend.to_device(value, p.device), dtype=dtype)
