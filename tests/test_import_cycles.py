"""No import cycles among tinyconv's modules (and tinyconv_kernels'), and dependencies run one way.

The graph is read from the source with ``ast``, not by importing.  What counts as an edge A -> B:

- every ``import`` / ``from ... import`` statement in A naming a module B of the same package, at module
  level *and inside functions*: an import moved into a function to dodge a cycle is still a cycle (the two
  modules still need each other), only one that Python happens to tolerate;
- ``from P import name`` counts as an edge to ``P.name`` when that is a module, else to ``P`` itself;
- not counted: the implicit import of a module's parent packages (``import tinyconv.functions.conv`` runs
  ``tinyconv/__init__.py`` first; every module would otherwise be in a cycle with the package that re-exports
  it), and imports under ``if TYPE_CHECKING:`` (none today).

The layers must also respect ``models -> nn -> functions -> backend -> kernels``: the test checks that no
module imports one from a layer above it, and that ``kernels/`` imports nothing of tinyconv.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {"tinyconv": ROOT / "tinyconv", "tinyconv_kernels": ROOT / "kernels"}


def _modules():
    """``{dotted name: path}`` of every module of the two packages."""
    found = {}
    for package, base in PACKAGES.items():
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package] + parts)] = path
    return found


def _type_checking_lines(tree):
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def imports_of(name, path, modules):
    """The modules of ``modules`` that module ``name`` (file ``path``) imports, as ``{module: first line}``."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = {}

    def add(target, line):
        if target in modules and target != name:
            edges.setdefault(target, line)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                add(sub if sub in modules else source, node.lineno)
    return edges


def import_graph():
    modules = _modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One cycle as a list of modules ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if color[start] != WHITE:
            continue
        stack, path = [(start, iter(sorted(graph[start])))], [start]
        color[start] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                color[node] = BLACK
                stack.pop()
                path.pop()
            elif color[child] == GREY:
                return path[path.index(child):] + [child]
            elif color[child] == WHITE:
                color[child] = GREY
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    modules = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py", "pkg.c": pkg / "c.py"}
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("")
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert find_cycle(graph) is None


def test_no_import_cycles():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:])]
        pytest.fail("import cycle:\n  " + "\n  ".join(steps))


LAYERS = ["tinyconv_kernels", "tinyconv.backend", "tinyconv.core", "tinyconv.functions", "tinyconv.nn",
          "tinyconv.models"]


def _layer(module):
    for i, prefix in reversed(list(enumerate(LAYERS))):
        if module == prefix or module.startswith(prefix + "."):
            return i
    return None


def test_dependencies_run_one_way():
    """models -> nn -> functions -> core -> backend -> kernels: nothing imports a layer above its own, and
    only backend imports the kernels."""
    wrong = []
    for module, targets in import_graph().items():
        here = _layer(module)
        for target, line in targets.items():
            there = _layer(target)
            if here is None or there is None:
                continue
            if there > here:
                wrong.append(f"{module} (line {line}) imports {target}, a layer above it")
            if there == 0 and here != 0 and module != "tinyconv.backend":
                wrong.append(f"{module} (line {line}) imports the kernels directly: only tinyconv.backend may")
    assert not wrong, "\n".join(wrong)
