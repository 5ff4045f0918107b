"""The recorded computational graph as Graphviz DOT text, rendered to SVG/PNG where ``dot`` is installed.

Every ``Function`` a forward pass recorded is one node (its op name, output shapes and dtype); every input
is an edge from the node that produced it (another Function, or a leaf tensor: a parameter, the input).
After ``backward()`` the nodes also show gradient norms: leaves read their ``.grad``, and intermediate
tensors theirs when the graph was taken with ``grads=True`` *before* the backward (which asks each function
to keep its outputs' gradients, ``Function.output_grads``: the graph holds few intermediate tensors)::

    g = viz.graph(loss, params=model.named_parameters(), grads=True)
    loss.backward()
    g.save("runs/graph", format="svg")         # graph.dot always; graph.svg when Graphviz is installed

Large networks stay readable in the module view: trace the forward pass with ``trace_modules(model)``
and pass ``modules=trace, depth=1`` (one node per child of the model: ``layer1``, ``layer2``...),
``depth=2`` (``layer1.0``...), and so on.  A Function belongs to the innermost module call that computed
it, found by walking back from that call's outputs to its inputs.
"""
import os
import shutil
import subprocess
import warnings
from collections import OrderedDict

import numpy as np

from .. import backend
from ..checkpoint import atomic_write
from ..core import Tensor


class GraphvizNotFoundWarning(RuntimeWarning):
    """``dot`` is not on PATH: the DOT file was written, no picture was rendered."""


def _functions(root):
    """The Functions reachable from ``root``'s creator, each once, producers before consumers (an
    iterative depth-first post-order: no recursion, however deep the network)."""
    if root._ctx is None:
        return []
    order, done, stack = [], set(), [(root._ctx, False)]
    while stack:
        f, expanded = stack.pop()
        if expanded:
            order.append(f)
            continue
        if id(f) in done:
            continue
        done.add(id(f))
        stack.append((f, True))
        for e in reversed([e for e in f.edges if e is not None and e[0] is not None]):
            if id(e[0]) not in done:
                stack.append((e[0], False))
    return order


def _norm(t):
    g = getattr(t, "grad", None)
    return None if g is None else _array_norm(g.data)


def _array_norm(a):
    return float(np.linalg.norm(backend.to_numpy(a).astype(np.float64)))


def _shape(shape):
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


class ModuleTrace:
    """Which module call computed which Function; made by ``trace_modules(model)``."""

    def __init__(self, model):
        self.model = model
        self.calls = []         # [start index, module path, module, input tensors, output tensors]
        self.owner = {}         # id(Function) -> (path, start index of the innermost call)
        self._handles = []
        self._starts = {}       # id(module) -> start indices of its calls in progress

    def __enter__(self):
        for name, m in self.model.named_modules():
            if name:  # the model itself is the root: its Functions are shown one by one
                self._handles.append(m.register_forward_pre_hook(self._pre(name)))
                self._handles.append(m.register_forward_hook(self._post(name)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False

    def _pre(self, name):
        def hook(module, args):
            self._starts.setdefault(id(module), []).append(len(self.calls))
            self.calls.append(None)  # the slot, filled when the call returns
        return hook

    def _post(self, name):
        def hook(module, args, out):
            start = self._starts[id(module)].pop()
            ins, outs = _tensors(args), _tensors(out)
            self.calls[start] = (start, name, module, ins, outs)
            self._claim(start, name, ins, outs)
        return hook

    def _claim(self, start, name, ins, outs):
        """Walk back from the call's outputs to its inputs; the Functions met were computed inside it."""
        stop = {id(t) for t in ins}
        stack = [t._ctx for t in outs if t._ctx is not None and id(t) not in stop]
        seen = set()
        while stack:
            f = stack.pop()
            if id(f) in seen:
                continue
            seen.add(id(f))
            prev = self.owner.get(id(f))
            if prev is not None and prev[1] < start:
                continue  # computed by a call that began before this one: outside it
            if prev is None:
                self.owner[id(f)] = (name, start)
            for x, edge in zip(f.inputs, f.edges):
                if edge is not None and edge[0] is not None and id(x) not in stop:
                    stack.append(edge[0])

    def module_of(self, f, depth):
        """The path of the module ``f`` is collapsed into at ``depth`` (None: shown as itself)."""
        owned = self.owner.get(id(f))
        if owned is None or depth is None:
            return None
        return ".".join(owned[0].split(".")[:depth])

    def output_of(self, path):
        """The outputs of the last call of the module at ``path``."""
        for call in reversed(self.calls):
            if call is not None and call[1] == path:
                return call[4]
        return ()


def _tensors(obj):
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def trace_modules(model):
    """A context manager recording which module computed each Function of the forward passes inside it."""
    return ModuleTrace(model)


class Graph:
    """Nodes and edges of a recorded graph; ``source`` is the DOT text, ``save`` writes and renders it.

    ``nodes``: ``OrderedDict`` key -> dict(kind='function'|'tensor'|'module', label, ...); ``edges``: list
    of (producer key, consumer key, input index or None for a collapsed module edge).  Labels are computed
    when ``source`` is read, so gradient norms appear once ``backward()`` has run.
    """

    def __init__(self, root, params=None, grads=False, modules=None, depth=None, name="graph"):
        self.root, self.name, self.depth = root, name, depth
        if params is None and modules is not None:
            params = modules.model.named_parameters()
        self.param_names = {id(p): n for n, p in (params or ())}
        self.functions = _functions(root)
        self.modules = modules
        self.nodes, self.edges = OrderedDict(), []
        self._build()
        if grads:  # the graph holds few intermediate tensors: the functions keep their outputs' gradients
            for f in self.functions:
                f.output_grads = {}
            if root._ctx is not None:
                root.retain_grad()

    # -- structure ------------------------------------------------------------------------------------
    def _key(self, f):
        path = self.modules.module_of(f, self.depth) if self.modules is not None else None
        return ("m", path) if path else ("f", id(f))

    def _build(self):
        outputs = {}  # id(f) -> {out index: tensor} for the gradient norms of intermediate tensors
        for f in self.functions:
            for x, edge in zip(f.inputs, f.edges):
                if edge is not None and edge[0] is not None:
                    outputs.setdefault(id(edge[0]), {})[edge[1]] = x
        if self.root._ctx is not None:
            outputs.setdefault(id(self.root._ctx), {})[self.root._out_index] = self.root
        for f in self.functions:  # producers first: a readable node order
            key = self._key(f)
            if key[0] == "m":
                members = self.nodes.setdefault(key, {"kind": "module", "path": key[1], "functions": []})
                members["functions"].append(f)
            else:
                self.nodes[key] = {"kind": "function", "function": f, "outputs": outputs.get(id(f), {})}
            for i, (x, edge) in enumerate(zip(f.inputs, f.edges)):
                if x is None or edge is None:
                    continue
                if edge[0] is not None:
                    src = self._key(edge[0])
                else:
                    name = self.param_names.get(id(x))
                    src = ("t", id(x))
                    if key[0] == "m" and name is not None and name.startswith(key[1] + "."):
                        continue  # a module's own parameter is inside its node
                    self.nodes.setdefault(src, {"kind": "tensor", "tensor": x, "name": name})
                if src != key:
                    self.edges.append((src, key, i if key[0] == "f" else None))
        if any(k[0] == "m" for k in self.nodes):  # collapsed: one edge per pair of nodes
            self.edges = list(OrderedDict(((s, d, None if d[0] == "m" or s[0] == "m" else i), None)
                                          for s, d, i in self.edges))

    # -- labels ---------------------------------------------------------------------------------------
    def _label(self, node):
        kind = node["kind"]
        if kind == "tensor":
            t = node["tensor"]
            head = node["name"] or ("leaf" if t.requires_grad else "input" if t.ndim else "constant")
            lines = [head, f"{_shape(t.shape)} {t.dtype}"]
            grad = _norm(t)
        elif kind == "function":
            f = node["function"]
            meta = getattr(f, "out_meta", ())
            lines = [type(f).__name__] + [f"{_shape(s)} {np.dtype(d)}" for s, d, _ in meta]
            kept = f.output_grads or {}
            norms = [_array_norm(kept[i]) if i in kept else _norm(t) for i, t in node["outputs"].items()]
            norms = [n for n in norms if n is not None]
            grad = max(norms) if norms else None
        else:
            module = self.modules.model.get_submodule(node["path"])
            outs = self.modules.output_of(node["path"])
            n = len(node["functions"])
            lines = [f"{node['path']}: {type(module).__name__}", f"{n} op{'s' * (n != 1)}"]
            lines += [f"{_shape(t.shape)} {t.dtype}" for t in outs]
            norms = [_norm(p) for p in module.parameters()]
            norms = [n for n in norms if n is not None]
            grad = float(np.sqrt(sum(n * n for n in norms))) if norms else None
            if grad is not None:
                lines.append(f"|grad W| = {grad:.3g}")
                grad = None
        if grad is not None:
            lines.append(f"|grad| = {grad:.3g}")
        return "\\n".join(s.replace('"', '\\"') for s in lines)

    @property
    def source(self):
        """The graph as DOT text."""
        ids = {k: f"n{i}" for i, k in enumerate(self.nodes)}
        style = {"function": 'shape=box, style="rounded,filled", fillcolor="#dbe8f7"',
                 "tensor": 'shape=ellipse, style=filled, fillcolor="#f3f3f3"',
                 "module": 'shape=box3d, style=filled, fillcolor="#fde9c9"'}
        lines = [f'digraph "{self.name}" {{', '  rankdir=TB; node [fontname="Helvetica", fontsize=10]; '
                 'edge [arrowsize=0.6];']
        for k, node in self.nodes.items():
            lines.append(f'  {ids[k]} [label="{self._label(node)}", {style[node["kind"]]}];')
        for s, d, _ in self.edges:
            lines.append(f"  {ids[s]} -> {ids[d]};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def __str__(self):
        return self.source

    def save(self, path, format="svg", log=print):
        """Write ``<path>.dot``, then render ``<path>.<format>`` with Graphviz's ``dot`` if it is on PATH.

        Returns the rendered file's path, or ``None`` (with a ``GraphvizNotFoundWarning`` saying how to
        install it) when ``dot`` is missing; the DOT file is written either way.
        """
        path = os.fspath(path)
        base = path[:-4] if path.endswith(".dot") else path
        atomic_write(base + ".dot", lambda f: f.write(self.source.encode()))
        dot = shutil.which("dot")
        if dot is None:
            warnings.warn(f"Graphviz's 'dot' is not on PATH, so {base}.dot was written but not rendered to "
                          f"{format.upper()} (install Graphviz: apt-get install graphviz, or brew install "
                          f"graphviz; then run: dot -T{format} {base}.dot -o {base}.{format})",
                          GraphvizNotFoundWarning, stacklevel=2)
            return None
        out = f"{base}.{format}"
        rendered = subprocess.run([dot, f"-T{format}", base + ".dot"], capture_output=True, check=False)
        if rendered.returncode != 0:
            raise RuntimeError(f"dot failed on {base}.dot: {rendered.stderr.decode(errors='replace').strip()}")
        atomic_write(out, lambda f: f.write(rendered.stdout))
        return out


def graph(tensor, params=None, grads=False, modules=None, depth=None, name="graph"):
    """The computational graph that produced ``tensor`` (a loss, or any output) as a :class:`Graph`.

    - ``params``: ``model.named_parameters()`` (or pairs ``(name, tensor)``) to name the leaf nodes.
    - ``grads``: keep the gradients of intermediate tensors in the coming ``backward()`` so that every
      node shows ``|grad|``; leaves show theirs in any case.
    - ``modules``: a :class:`ModuleTrace` of the forward pass (``with viz.trace_modules(model) as tr:``);
      with ``depth`` (1, 2, ...) each module at that depth is collapsed into one node.

    ``str(g)`` / ``g.source`` is the DOT text; ``g.save(path, format='svg'|'png')`` writes and renders it.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"viz.graph: expected a Tensor, got {type(tensor).__name__}")
    if tensor._ctx is None:
        raise ValueError("viz.graph: the tensor has no recorded graph (a leaf, or computed under no_grad(), or "
                         "its graph was freed by backward(); call graph() before backward() or use "
                         "backward(retain_graph=True))")
    if depth is not None and modules is None:
        raise ValueError("viz.graph: depth needs modules=trace (with viz.trace_modules(model) as trace: ...)")
    return Graph(tensor, params, grads, modules, depth, name)
