"""Lesson 1: backpropagation by hand on a tiny graph, then the same numbers from autograd and gradcheck.

    python examples/lessons/01_backprop_by_hand.py [--quick] [--out DIR]

The graph (lecture 001's style): ``L = (sigmoid(w1 * x1 + w2 * x2 + b) - t) ** 2``.  Forward, the local
derivative of every node written out, the chain rule applied from L back to the weights, then
``loss.backward()`` and ``tinyconv.gradcheck`` agree.  Writes the graph as DOT (and SVG/PNG with Graphviz).
"""
# %%
import math
import warnings

import numpy as np

from _common import parse_args, saved

import tinyconv as tc
from tinyconv import viz

args = parse_args(__doc__)
x1, x2, t = 2.0, -1.0, 1.0
w1, w2, b = 0.5, -0.3, 0.1

# %% Forward, one node at a time.
a1 = w1 * x1                  # product
a2 = w2 * x2                  # product
z = a1 + a2 + b               # sum
s = 1 / (1 + math.exp(-z))    # sigmoid
d = s - t                     # difference
L = d ** 2                    # square
print(f"forward: a1={a1:.4f} a2={a2:.4f} z={z:.4f} s={s:.4f} d={d:.4f} L={L:.6f}")

# %% Backward: the local derivative of each node, multiplied along the path (the chain rule).
dL_dd = 2 * d                 # d(d^2)/dd = 2d
dL_ds = dL_dd * 1             # d(s - t)/ds = 1
dL_dz = dL_ds * s * (1 - s)   # sigmoid'(z) = s (1 - s)
dL_dw1 = dL_dz * x1           # d(w1 x1)/dw1 = x1, and dz/da1 = 1
dL_dw2 = dL_dz * x2
dL_db = dL_dz * 1
for name, v in [("dL/dd", dL_dd), ("dL/ds", dL_ds), ("dL/dz", dL_dz), ("dL/dw1", dL_dw1),
                ("dL/dw2", dL_dw2), ("dL/db", dL_db)]:
    print(f"  {name:7s} = {v:+.6f}")

# %% The same graph in tinyconv: autograd's gradients are the hand-computed ones.
w = tc.tensor(np.array([w1, w2]), dtype=tc.float64, requires_grad=True)
bias = tc.tensor(np.array(b), dtype=tc.float64, requires_grad=True)
x = tc.tensor(np.array([x1, x2]), dtype=tc.float64)
loss = (tc.sigmoid((w * x).sum() + bias) - t) ** 2
g = viz.graph(loss, params=[("w", w), ("b", bias)], grads=True, name="lesson01")
loss.backward()
print(f"autograd: dL/dw = {w.grad.numpy()}, dL/db = {float(bias.grad.item()):+.6f}")
assert np.allclose(w.grad.numpy(), [dL_dw1, dL_dw2]) and np.isclose(float(bias.grad.item()), dL_db)

# %% gradcheck: central differences (f(w + h) - f(w - h)) / 2h agree with backward, element by element.
ok = tc.gradcheck(lambda w, b: (tc.sigmoid((w * x).sum() + b) - t) ** 2, [w.detach().requires_grad_(),
                                                                          bias.detach().requires_grad_()])
print(f"gradcheck: {ok}")

# %% The recorded graph, with the gradient norm at every node.
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    rendered = g.save(f"{args.out}/graph", format="png")
saved(f"{args.out}/graph.dot")
if rendered:
    saved(rendered)
else:
    print(f"  {caught[-1].message}")
