"""Time per MNIST epoch of the LeNet-5 recipe of ``examples/train_lenet.py``, tinyconv beside PyTorch, interleaved.

    python -m benchmarks.lenet_epoch [--reps 2] [--modern] [--threads 1] [--limit N]

One epoch = the 60,000 training images in shuffled minibatches of 64 (forward, cross-entropy, backward, SGD
with momentum 0.9 and weight decay 5e-4) plus the evaluation of the 10,000 test images in batches of 1,000:
the same network (``tinyconv.models.lenet5`` and its PyTorch twin in ``torch_models``), the same arithmetic.
Both frameworks read the same pre-padded, standardised float32 arrays, so the input pipeline is not timed.
The two are run alternately (tinyconv epoch, PyTorch epoch, tinyconv, ...) so that a busy shared machine slows
both alike; each epoch's time is printed, then the medians.  Needs MNIST (found as ``tinyconv.data.MNIST``
finds it) and ``torch``.
"""
import argparse
import statistics
import time

import numpy as np

import tinyconv as tc
from tinyconv import functional as F, optim
from tinyconv.data import MNIST
from tinyconv.models import lenet5


def arrays(limit=None):
    """(x_train, y_train, x_test, y_test): float32 (N, 1, 32, 32) padded and standardised, int64 labels."""
    out = []
    for train in (True, False):
        ds = MNIST(train=train)
        x = np.pad(ds.images.astype(np.float32) / 255, ((0, 0), (2, 2), (2, 2)))
        x = ((x - 0.1307) / 0.3081)[:, None]
        y = ds.labels.astype(np.int64)
        if limit:
            x, y = x[:limit], y[:limit]
        out += [np.ascontiguousarray(x), y]
    return out


def batches(n, size, seed):
    order = np.random.default_rng(seed).permutation(n)
    return [order[i:i + size] for i in range(0, n, size)]


def tinyconv_epoch(model, opt, data, seed):
    xtr, ytr, xte, yte = data
    t0 = time.perf_counter()
    model.train()
    for idx in batches(len(ytr), 64, seed):
        loss = F.cross_entropy(model(tc.tensor(xtr[idx])), tc.tensor(ytr[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    correct = 0
    with tc.no_grad():
        for i in range(0, len(yte), 1000):
            correct += int((model(tc.tensor(xte[i:i + 1000])).numpy().argmax(1) == yte[i:i + 1000]).sum())
    return time.perf_counter() - t0, correct / len(yte)


def torch_epoch(torch, model, opt, data, seed):
    xtr, ytr, xte, yte = data
    t0 = time.perf_counter()
    model.train()
    for idx in batches(len(ytr), 64, seed):
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(xtr[idx])), torch.from_numpy(ytr[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(yte), 1000):
            correct += int((model(torch.from_numpy(xte[i:i + 1000])).argmax(1).numpy() == yte[i:i + 1000]).sum())
    return time.perf_counter() - t0, correct / len(yte)


def torch_lenet(torch, modern):
    from .torch_models import lenet5 as twin
    model = twin()
    if modern:   # the same layers with ReLU and max pooling
        for i, m in enumerate(model):
            if isinstance(m, torch.nn.Tanh):
                model[i] = torch.nn.ReLU()
            elif isinstance(m, torch.nn.AvgPool2d):
                model[i] = torch.nn.MaxPool2d(2, 2)
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=2, help="epochs per framework (alternating)")
    p.add_argument("--modern", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="use N images per split (a quick check)")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    tc.set_num_threads(args.threads)
    data = arrays(args.limit)
    tc.manual_seed(0)
    torch.manual_seed(0)
    ours = lenet5(modern=args.modern)
    theirs = torch_lenet(torch, args.modern)
    opt_ours = optim.SGD(ours.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    tinyconv_epoch(ours, opt_ours, [a[:640] for a in data], 99)   # compile the kernels outside the timing
    times = {"tinyconv": [], "PyTorch": []}
    for rep in range(args.reps):
        for name, fn in (("tinyconv", lambda: tinyconv_epoch(ours, opt_ours, data, rep)),
                         ("PyTorch", lambda: torch_epoch(torch, theirs, opt_theirs, data, rep))):
            seconds, acc = fn()
            times[name].append(seconds)
            print(f"epoch {rep + 1} {name:8s} {seconds:6.1f} s  (test top-1 {acc:.2%})", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median s/epoch, {args.threads} thread(s), {'modern' if args.modern else 'tanh/avg-pool'} LeNet-5, "
          f"torch {torch.__version__}: tinyconv {med['tinyconv']:.1f}, PyTorch {med['PyTorch']:.1f}, "
          f"ratio {med['tinyconv'] / med['PyTorch']:.2f}x")


if __name__ == "__main__":
    main()
