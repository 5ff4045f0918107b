"""Time per MNIST epoch of the LeNet-5 recipe of ``examples/train_lenet.py``, tinyconv beside PyTorch, interleaved.

    python -m benchmarks --only epoch        # the suite's row: the script's whole epoch, data loading included
    python -m benchmarks.lenet_epoch [--reps 2] [--modern] [--threads 1] [--limit N]   # the compute alone

The suite's ``epoch`` section (``bench_epoch``) times what ``examples/train_lenet.py`` does for one epoch with
its defaults: read MNIST (the IDX files), build its loaders (pad to 32x32, scale, standardise; shuffled batches
of 64), train (SGD, lr 0.05, momentum 0.9, weight decay 5e-4, the cosine schedule, the loss read every step)
and evaluate on the 10,000 test images (loss, top-1, top-5), at the script's ``--threads`` default.  PyTorch
runs the same network (Xavier-uniform weights, zero biases), recipe and evaluation two ways, at its default
thread count: the usual torchvision pipeline (``datasets.MNIST`` with ``Pad``, ``ToTensor``, ``Normalize`` per
image, ``DataLoader``) and a tuned one (the whole set standardised once as a tensor, batches sliced from a
shuffled index).  Each run builds everything afresh; the runs alternate.

The command line below times the compute alone:
One epoch = the 60,000 training images in shuffled minibatches of 64 (forward, cross-entropy, backward, SGD
with momentum 0.9 and weight decay 5e-4) plus the evaluation of the 10,000 test images in batches of 1,000:
the same network (``tinyconv.models.lenet5`` and its PyTorch twin in ``torch_models``), the same arithmetic.
Both frameworks read the same pre-padded, standardised float32 arrays, so the input pipeline is not timed.
The two are run alternately (tinyconv epoch, PyTorch epoch, tinyconv, ...) so that a busy shared machine slows
both alike; each epoch's time is printed, then the medians.  Needs MNIST (found as ``tinyconv.data.MNIST``
finds it) and ``torch``.
"""
import argparse
import contextlib
import importlib.util
import io
import os
import shutil
import statistics
import tempfile
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



# -- the suite's row: examples/train_lenet.py's whole epoch -----------------------------------------------
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = 0.1307, 0.3081
EPOCH_TARGET = 2.0   # tinyconv's epoch at most half PyTorch's


def train_lenet_script():
    """``examples/train_lenet.py`` as a module (its parser, loaders and data loading are what is timed)."""
    path = os.path.join(ROOT, "examples", "train_lenet.py")
    spec = importlib.util.spec_from_file_location("_bench_train_lenet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_args(script, data_dir, limit):
    argv = (["--data-dir", data_dir] if data_dir else []) + ["--no-progress"]
    if limit:
        argv += ["--limit-train", str(limit[0]), "--limit-test", str(limit[1])]
    return script.parse_args(argv)


def tinyconv_script_epoch(script, args):
    """One epoch of the script with ``args``, from reading the files to the evaluation; (seconds, top-1)."""
    from tinyconv import train
    from tinyconv.threads import num_threads
    t0 = time.perf_counter()
    quiet = io.StringIO()   # its notes and warnings were printed once, when the section read the files
    with num_threads(args.threads), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        train_ds, test_ds, _, _ = script.load_data(args)
        tc.manual_seed(args.seed)
        model = lenet5(num_classes=10, in_channels=1, modern=args.modern, init=args.init)
        train_loader, test_loader = script.make_loaders(args, train_ds, test_ds)
        opt = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
        scheduler = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
        watch = script.common.StepWatch(opt, len(train_loader), num_classes=10, warmup=args.warmup)
        watch.start(0)
        history = train.fit(model, train_loader, test_loader, opt, F.cross_entropy, 1, scheduler=scheduler,
                            progress=False, log=None, on_step_end=watch)
    return time.perf_counter() - t0, history[-1]["test_acc1"]


def torchvision_root(train_ds, test_ds):
    """A temporary folder laid out as ``torchvision.datasets.MNIST`` reads it (``MNIST/raw``, uncompressed IDX
    files), holding the images and labels tinyconv loaded: both frameworks read the same bytes."""
    from tinyconv.data.idx import write_idx
    root = tempfile.mkdtemp(prefix="tinyconv-bench-mnist-")
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw)
    for prefix, ds in (("train", train_ds), ("t10k", test_ds)):
        write_idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), np.asarray(ds.images, np.uint8), compress=False)
        write_idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), np.asarray(ds.labels, np.uint8), compress=False)
    return root


def torch_recipe(torch, args):
    """PyTorch's twin of the script's LeNet-5, its initialisation, optimiser and schedule."""
    torch.manual_seed(args.seed)
    model = torch_lenet(torch, args.modern)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.xavier_uniform_(m.weight)
            torch.nn.init.zeros_(m.bias)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return model, opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)


def torch_train_eval(torch, model, opt, scheduler, train_batches, test_batches):
    """The script's epoch in PyTorch: train (the loss read every step), then loss, top-1 and top-5 on the test
    set; returns the top-1."""
    ce = torch.nn.functional.cross_entropy
    model.train()
    for x, y in train_batches:
        out = model(x)
        loss = ce(out, y)
        loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        (out.argmax(1) == y).sum().item()
    model.eval()
    total, correct1, correct5, seen = 0.0, 0, 0, 0
    with torch.no_grad():
        for x, y in test_batches:
            out = model(x)
            total += float(ce(out, y)) * len(y)
            top5 = out.topk(5, 1).indices
            correct1 += int((top5[:, 0] == y).sum())
            correct5 += int((top5 == y[:, None]).any(1).sum())
            seen += len(y)
    scheduler.step()
    return correct1 / seen


def subset_indices(n, total, seed):
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False)) if n and n < total else None


def torchvision_epoch(torch, root, args, limit):
    """The usual torchvision pipeline: per-image transforms, ``DataLoader``; (seconds, top-1)."""
    from torchvision import datasets, transforms as T
    t0 = time.perf_counter()
    tf = T.Compose([T.Pad(2), T.ToTensor(), T.Normalize((MEAN,), (STD,))])
    train_ds = datasets.MNIST(root, train=True, transform=tf, download=False)
    test_ds = datasets.MNIST(root, train=False, transform=tf, download=False)
    if limit:
        keep = [subset_indices(n, len(ds), args.seed) for n, ds in zip(limit, (train_ds, test_ds))]
        train_ds, test_ds = [ds if k is None else torch.utils.data.Subset(ds, k)
                             for ds, k in zip((train_ds, test_ds), keep)]
    model, opt, scheduler = torch_recipe(torch, args)
    g = torch.Generator().manual_seed(args.seed)
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, generator=g)
    test_loader = torch.utils.data.DataLoader(test_ds, batch_size=1000)
    acc = torch_train_eval(torch, model, opt, scheduler, train_loader, test_loader)
    return time.perf_counter() - t0, acc


def torch_tensor_epoch(torch, root, args, limit):
    """A tuned PyTorch pipeline: the split read and standardised once as one tensor, batches sliced from a
    shuffled index; (seconds, top-1)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file
    t0 = time.perf_counter()
    splits = []
    for prefix, n in (("train", limit[0] if limit else None), ("t10k", limit[1] if limit else None)):
        raw = os.path.join(root, "MNIST", "raw", prefix)
        x, y = read_image_file(raw + "-images-idx3-ubyte"), read_label_file(raw + "-labels-idx1-ubyte").long()
        keep = subset_indices(n, len(y), args.seed)
        if keep is not None:
            x, y = x[keep], y[keep]
        x = (torch.nn.functional.pad(x, (2, 2, 2, 2)).float().div_(255).sub_(MEAN).div_(STD)).unsqueeze(1)
        splits.append((x, y))
    (xtr, ytr), (xte, yte) = splits
    model, opt, scheduler = torch_recipe(torch, args)
    order = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(args.seed))
    train_batches = ((xtr[i], ytr[i]) for i in order.split(args.batch_size))
    test_batches = ((xte[i:i + 1000], yte[i:i + 1000]) for i in range(0, len(yte), 1000))
    acc = torch_train_eval(torch, model, opt, scheduler, train_batches, test_batches)
    return time.perf_counter() - t0, acc


def bench_epoch(config, impls, out):
    """The suite's section: the script's epoch beside PyTorch's two pipelines (see the module docstring)."""
    from .tables import Table, fmt, ratio_cell, verdict
    from .workloads import torch
    table = Table("2. LeNet-5 MNIST epoch of `examples/train_lenet.py` (data loading, training, evaluation)",
                  ["implementation", "threads", "images (train / test)", "s per epoch", "test top-1",
                   "tinyconv speed vs this", "target met"], out)
    script = train_lenet_script()
    args = script_args(script, config.epoch_data_dir, config.epoch_limit)
    try:
        train_ds, test_ds = script.common.load_split(args, True), script.common.load_split(args, False)
    except script.BadInput as e:
        table.note(f"Not run: no MNIST here ({e})")
        return table
    runs = {"tinyconv": lambda: tinyconv_script_epoch(script, args)}
    root = None
    if "torch" in impls and torch is not None:
        try:
            import torchvision  # noqa: F401
            root = torchvision_root(train_ds, test_ds)
            runs["PyTorch, torchvision pipeline"] = lambda: torchvision_epoch(torch, root, args, config.epoch_limit)
            runs["PyTorch, tensors"] = lambda: torch_tensor_epoch(torch, root, args, config.epoch_limit)
        except ImportError:
            table.note("PyTorch's runs need torchvision (its MNIST reader and transforms); not installed.")
    limited = [min(n or len(ds.labels), len(ds.labels)) for n, ds in zip(config.epoch_limit or (None, None),
                                                                          (train_ds, test_ds))]
    try:
        tinyconv_script_epoch(script, script_args(script, config.epoch_data_dir, (640, 100)))  # compile first
        times, accs = {k: [] for k in runs}, {}
        for rep in range(config.epoch_reps):
            names = list(runs)[rep % len(runs):] + list(runs)[:rep % len(runs)]
            for name in names:
                seconds, accs[name] = runs[name]()
                times[name].append(seconds)
    finally:
        if root:
            shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    threads = {"tinyconv": f"{args.threads} (the script's default)"}
    for name in runs:
        ratio = med[name] / med["tinyconv"] if name != "tinyconv" else None
        table.add([name, threads.get(name, f"{torch.get_num_threads()} (PyTorch's default)"),
                   f"{limited[0]:,} / {limited[1]:,}", fmt(med[name]), f"{accs[name]:.2%}",
                   ratio_cell(ratio) if ratio else "", verdict(ratio, EPOCH_TARGET)])
    table.note(f"Medians of {config.epoch_reps} epoch(s) each, the runs alternating; each run reads the files, builds "
               "the model and loaders afresh, trains one epoch and evaluates (`benchmarks/lenet_epoch.py`).  "
               "The tensor pipeline is the fastest way we know to feed PyTorch this data set; the torchvision one "
               "is how its tutorials do it.")
    return table


if __name__ == "__main__":
    main()
