"""viz.graph: one node per recorded Function, edges matching its inputs, names, gradient norms, module view."""
import re
import sys
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F, nn, viz

graph_module = sys.modules["tinyconv.viz.graph"]


def parse_dot(text):
    """{node id: label} and [(src, dst)] from the DOT text viz writes."""
    nodes = dict(re.findall(r'^\s*(n\d+) \[label="((?:[^"\\]|\\.)*)"', text, re.M))
    edges = re.findall(r"^\s*(n\d+) -> (n\d+);", text, re.M)
    return nodes, edges


def small_net():
    tc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def test_one_node_per_function_and_edges_match_inputs():
    w = tc.randn(3, 4, requires_grad=True)
    x = tc.randn(2, 3)
    h = x @ w
    y = (h.tanh() * h).sum()        # h is used twice: two edges from the MatMul node
    g = viz.graph(y, params=[("w", w)])
    fns = g.functions
    assert sorted(type(f).__name__ for f in fns) == sorted(["MatMul", "Tanh", "Mul", "Sum"])
    nodes, edges = parse_dot(g.source)
    func_ids = {f"n{i}" for i, (k, n) in enumerate(g.nodes.items()) if n["kind"] == "function"}
    assert len(func_ids) == len(fns)
    # every input of every Function is exactly one edge into its node, from its producer's node
    ids = {k: f"n{i}" for i, k in enumerate(g.nodes)}
    expected = []
    for f in fns:
        for x_in, (ctx, _) in zip(f.inputs, f.edges):
            src = ("f", id(ctx)) if ctx is not None else ("t", id(x_in))
            expected.append((ids[src], ids[("f", id(f))]))
    assert sorted(edges) == sorted(expected)
    labels = list(nodes.values())
    assert any(lab.startswith("w\\n(3, 4) float32") for lab in labels)
    assert any(lab.startswith("MatMul\\n(2, 4) float32") for lab in labels)
    mul = ids[("f", id(next(f for f in fns if type(f).__name__ == "Mul")))]
    matmul = ids[("f", id(next(f for f in fns if type(f).__name__ == "MatMul")))]
    assert sum(1 for s, d in edges if s == matmul) == 2 and (matmul, mul) in edges


def test_gradient_norms_after_backward():
    tc.manual_seed(0)
    w = tc.randn(3, 4, requires_grad=True)
    x = tc.randn(2, 3)
    h = x @ w
    y = (h * h).sum()
    g = viz.graph(y, params=[("w", w)], grads=True)
    assert "|grad|" not in g.source
    y.backward()
    nodes, _ = parse_dot(g.source)
    w_label = next(lab for lab in nodes.values() if lab.startswith("w\\n"))
    assert f"|grad| = {np.linalg.norm(w.grad.numpy()):.3g}" in w_label
    matmul = next(lab for lab in nodes.values() if lab.startswith("MatMul"))
    assert f"|grad| = {np.linalg.norm(2 * h.numpy()):.3g}" in matmul  # dy/dh = 2h


def test_gradient_norms_of_intermediates_nobody_holds():
    """Inside a model the intermediate tensors are gone by backward (the graph holds them weakly): the
    functions keep their outputs' gradients instead."""
    tc.manual_seed(0)
    lin1 = tc.nn.Linear(4, 6)
    x = tc.randn(3, 4)
    y = (lin1(x).relu() * 2.0).sum()
    g = viz.graph(y, grads=True)
    y.backward()
    nodes, _ = parse_dot(g.source)
    relu = next(lab for lab in nodes.values() if lab.startswith("ReLU"))
    assert relu.endswith(f"|grad| = {np.linalg.norm(np.full((3, 6), 2.0)):.3g}")
    linear = next(lab for lab in nodes.values() if lab.startswith("Linear"))
    h = (x.numpy() @ lin1.weight.numpy().T + lin1.bias.numpy()) > 0
    assert linear.endswith(f"|grad| = {np.linalg.norm(2.0 * h):.3g}")


def test_module_view_collapses_each_module():
    model = small_net()
    x = tc.randn(2, 1, 6, 6)
    with viz.trace_modules(model) as trace:
        loss = model(x).sum()
    full = viz.graph(loss, params=model.named_parameters())
    view = viz.graph(loss, params=model.named_parameters(), modules=trace, depth=1)
    nodes, edges = parse_dot(view.source)
    heads = [lab.split("\\n")[0] for lab in nodes.values()]
    assert sorted(heads) == sorted(["input", "0: Conv2d", "1: ReLU", "2: Flatten", "3: Linear", "Sum"])
    by = {h: f"n{i}" for i, h in enumerate(heads)}
    chain = ["input", "0: Conv2d", "1: ReLU", "2: Flatten", "3: Linear", "Sum"]
    assert sorted(edges) == sorted((by[a], by[b]) for a, b in zip(chain, chain[1:]))
    assert len(full.nodes) > len(view.nodes)  # parameters and ops folded into their modules
    assert "(2, 2, 4, 4) float32" in nodes[by["0: Conv2d"]]


@pytest.mark.parametrize("name, blocks", [("resnet18", [2, 2, 2, 2]),
                                          ("resnet50", [3, 4, 6, 3])])
def test_module_view_of_resnet_by_depth(name, blocks):
    from tinyconv import models
    tc.manual_seed(0)
    model = getattr(models, name)(num_classes=10).eval()
    with viz.trace_modules(model) as trace:
        out = model(tc.randn(1, 3, 32, 32))
    g1 = viz.graph(out, modules=trace, depth=1)
    heads = [n["path"] for n in g1.nodes.values() if n["kind"] == "module"]
    assert heads == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    # every Function is in exactly one collapsed node or shown on its own
    folded = sum(len(n["functions"]) for n in g1.nodes.values() if n["kind"] == "module")
    alone = sum(1 for n in g1.nodes.values() if n["kind"] == "function")
    assert folded + alone == len(g1.functions)
    g2 = viz.graph(out, modules=trace, depth=2)
    found = [n["path"] for n in g2.nodes.values() if n["kind"] == "module" and n["path"].startswith("layer")]
    assert found == [f"layer{s + 1}.{b}" for s, n in enumerate(blocks) for b in range(n)]  # one node per block
    # a block's skip connection: layer1.0 feeds layer1.1 (and nothing is skipped across blocks)
    ids = {n.get("path"): k for k, n in g2.nodes.items()}
    assert (ids["layer1.0"], ids["layer1.1"], None) in g2.edges


def test_module_view_of_densenet121():
    from tinyconv.models import densenet121
    tc.manual_seed(0)
    model = densenet121(num_classes=10).eval()
    with viz.trace_modules(model) as trace:
        out = model(tc.randn(1, 3, 32, 32))
    g = viz.graph(out, modules=trace, depth=2)
    paths = [n["path"] for n in g.nodes.values() if n["kind"] == "module"]
    assert paths[:2] == ["features.conv0", "features.norm0"] and "features.denseblock4" in paths
    assert len(g.functions) > 300 > len(g.nodes)
    assert len(parse_dot(g.source)[0]) == len(g.nodes)


def test_save_renders_with_dot_or_says_how(tmp_path, monkeypatch):
    w = tc.randn(2, requires_grad=True)
    g = viz.graph((w * w).sum(), params=[("w", w)])
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)
    with pytest.warns(viz.GraphvizNotFoundWarning, match="apt-get install graphviz"):
        assert g.save(tmp_path / "g", format="svg") is None
    assert (tmp_path / "g.dot").read_text() == g.source
    monkeypatch.undo()
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    path = g.save(tmp_path / "g", format="svg")
    svg = open(path).read()
    assert "<svg" in svg and "w" in svg and svg.count('class="node"') == len(g.nodes)


def test_graph_errors():
    with pytest.raises(ValueError, match="no recorded graph"):
        viz.graph(tc.randn(2))
    w = tc.randn(2, requires_grad=True)
    with pytest.raises(ValueError, match="trace_modules"):
        viz.graph((w * 2).sum(), depth=1)
