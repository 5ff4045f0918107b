"""Lesson 4: vanishing gradients (lecture 002): why ReLU, batch norm and residual connections help.

    python examples/lessons/04_vanishing_gradients.py [--quick] [--out DIR]

Three networks of the same depth (``--depth`` hidden layers of width 64) on MNIST digits: plain sigmoid,
plain tanh (Xavier initialisation, which was designed to keep tanh's gradients alive, and does), and ReLU
with batch norm and a residual connection around every layer.  One backward pass of the cross-entropy;
the gradient norm of every layer's weight is plotted against its depth.  Through sigmoid each layer
multiplies the gradient by at most 1/4 times its weights, so the first layers of the plain network receive
orders of magnitude less than the last; the residual path carries the gradient back unchanged.  Then a few
steps of training of each show what that means for learning.
"""
# %%
import json

import numpy as np

from _common import load_digits, parse_args, saved, write_text

import tinyconv as tc
from tinyconv import functional as F, nn, optim
from tinyconv.viz import _plot

args = parse_args(__doc__, extra=lambda p: p.add_argument("--depth", type=int, default=None))
depth = args.depth or (20 if args.quick else 30)
steps = 30 if args.quick else 200


class Plain(nn.Module):
    """``depth`` x (Linear, activation), then the classifier."""

    def __init__(self, depth, act):
        super().__init__()
        self.inp = nn.Linear(32 * 32, 64)
        self.hidden = nn.ModuleList([nn.Linear(64, 64) for _ in range(depth)])
        self.act = act
        self.out = nn.Linear(64, 10)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        h = self.act(self.inp(x.reshape(len(x), -1)))
        for lin in self.hidden:
            h = self.act(lin(h))
        return self.out(h)


class Residual(nn.Module):
    """``depth`` x (h + BN(Linear(ReLU(h)))), He initialisation, a batch norm before the classifier."""

    def __init__(self, depth):
        super().__init__()
        self.inp = nn.Linear(32 * 32, 64)
        self.hidden = nn.ModuleList([nn.Linear(64, 64) for _ in range(depth)])
        self.norms = nn.ModuleList([nn.BatchNorm1d(64) for _ in range(depth)])
        self.final = nn.BatchNorm1d(64)
        self.out = nn.Linear(64, 10)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        h = self.inp(x.reshape(len(x), -1))
        for lin, bn in zip(self.hidden, self.norms):
            h = h + bn(lin(F.relu(h)))
        return self.out(F.relu(self.final(h)))


def layer_grad_norms(model, x, y):
    """||dL/dW|| of every layer, input layer first, after one backward pass."""
    model.zero_grad()
    F.cross_entropy(model(tc.tensor(x)), tc.tensor(y)).backward()
    layers = [model.inp] + list(model.hidden) + [model.out]
    return np.array([float(np.linalg.norm(m.weight.grad.numpy())) for m in layers])


# %%
x, y, described = load_digits("train", 512 if args.quick else 2048, args.seed)
print(described)
nets = {"plain sigmoid": Plain(depth, tc.sigmoid), "plain tanh": Plain(depth, tc.tanh),
        "ReLU + BN + residual": Residual(depth)}
norms = {name: layer_grad_norms(net, x[:256], y[:256]) for name, net in nets.items()}
for name, g in norms.items():
    print(f"{name:22s} first-layer |dW| {g[0]:.2e}, last hidden {g[-2]:.2e}, ratio last/first {g[-2] / g[0]:.1e}")

# %% A few SGD steps each: the loss of the plain sigmoid network hardly moves.
losses = {}
rng = np.random.default_rng(args.seed)
for name, net in nets.items():
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    curve = []
    for step in range(steps):
        b = rng.integers(0, len(x), 64)
        loss = F.cross_entropy(net(tc.tensor(x[b])), tc.tensor(y[b]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(float(loss.item()))
    losses[name] = curve
    print(f"{name:22s} loss {curve[0]:.3f} -> {np.mean(curve[-10:]):.3f} after {steps} steps")

# %% The figure: gradient norm per layer (log scale), and the training loss.
fig = _plot.figure((11, 4))
ax, ax2 = fig.subplots(1, 2)
for name, g in norms.items():
    ax.semilogy(np.arange(len(g)), g, "o-", ms=3, label=name)
    ax2.plot(losses[name], label=name)
ax.set(xlabel="layer (0 = input layer)", ylabel="||dL/dW||", title=f"gradient norm per layer, depth {depth}")
ax2.set(xlabel="SGD step", ylabel="training loss", title="training loss")
for a in (ax, ax2):
    a.grid(alpha=0.3, which="both")
    a.legend(fontsize=8)
saved(_plot.save(fig, f"{args.out}/grad_norms.png"))
write_text(f"{args.out}/grad_norms.json", json.dumps(
    {"depth": depth, "grad_norms": {k: v.tolist() for k, v in norms.items()}, "losses": losses}, indent=1))
