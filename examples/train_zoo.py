"""Train any zoo model at reduced resolution on real data (Fashion-MNIST or MNIST).

    python examples/train_zoo.py --model vgg11_bn --dataset fashion-mnist --image-size 32 --epochs 2
    python examples/train_zoo.py --model googlenet_torchvision --image-size 64 --limit-train 5000 --device cuda

The 28x28 grayscale images are resized (bilinear) to ``--image-size`` and fed as one channel: every zoo
model takes ``in_channels`` (and ``num_classes=10``).  The architectures are the ImageNet ones, only the input is
small, so a few need a minimum size (Inception-v3/v4, Inception-ResNet-v2: 75; OverFeat: 71/77; AlexNet: 63;
LeNet-5 exactly 32).  Models with auxiliary classifiers (GoogLeNet, Inception-v3) are trained with their
auxiliary losses added at ``model.aux_weight`` (0.3 each for GoogLeNet, 0.4 for Inception-v3); evaluation uses
the main output only.

Training is ``tinyconv.train.fit``: SGD with momentum 0.9 and weight decay 5e-4 (the AlexNet/VGG recipe), a
cosine learning-rate schedule, per-epoch test accuracy, and a checkpoint every epoch in ``--out`` (resumable
with ``--resume``, which keeps the run's model and settings).

The options shared with ``train_lenet.py`` (``--dataset``, ``--data-dir``, ``--epochs``, ``--lr``, ``--out``,
``--resume``, ``--limit-train``/``--limit-test`` as seeded random subsets, ...) have the same names, checks,
messages and exit statuses: they live in ``example_common``.  ``--data-root`` is the deprecated old name of
``--data-dir``.  Exit status: 0 done, 1 diverged, 2 bad input (an unknown model or option, an image size the
model cannot take, missing/corrupt/wrong data, a checkpoint of another model or run), 130 interrupted.
"""
import argparse
import difflib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # example_common, also when loaded by path

import tinyconv  # noqa: E402
import tinyconv.functional as F  # noqa: E402
from tinyconv import models, nn  # noqa: E402
from tinyconv.data import DataLoader, transforms as T  # noqa: E402
from tinyconv.nn.init import skip_init  # noqa: E402
from tinyconv.train import CHECKPOINT_NAME, fit  # noqa: E402

import example_common as common  # noqa: E402
from example_common import DATASETS, BadInput  # noqa: E402

# the settings a --resume takes from the checkpoint (a changed one is refused)
KEPT = ("model", "option", "dataset", "image_size", "batch_size", "lr", "momentum", "weight_decay", "epochs", "seed",
        "limit_train", "limit_test")


def _interpolation_matrix(n_in, n_out):
    """(n_out, n_in) bilinear weights, sampling at pixel centres (``align_corners=False``, as PyTorch)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] += 1 - (pos - lo)
    m[np.arange(n_out), hi] += pos - lo
    return m


class Resize(T.Transform):
    """Bilinear resize of (H, W) float images to ``size x size``: ``R_h @ x @ R_w^T``."""

    def __init__(self, size):
        self.size = int(size)

    def __call__(self, x, rng=None):
        return self.batch(x[None], rng)[0]

    def batch(self, xs, rng=None):
        r_h = _interpolation_matrix(xs.shape[-2], self.size)
        r_w = _interpolation_matrix(xs.shape[-1], self.size)
        return (r_h @ xs.astype(np.float32) @ r_w.T).astype(np.float32)


class AddChannel(T.Transform):
    """(N, H, W) -> (N, 1, H, W)."""

    def __call__(self, x, rng=None):
        return x[None]

    def batch(self, xs, rng=None):
        return xs[:, None]


class MainOutput(nn.Module):
    """Wraps a model that returns ``(logits, aux...)`` in training mode: returns the logits and keeps the
    auxiliary outputs in ``self.aux`` for the loss."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.aux = ()

    def forward(self, x):
        out = self.model(x)
        if isinstance(out, tuple):
            out, *aux = out
            self.aux = tuple(aux)
        else:
            self.aux = ()
        return out


def make_loss(wrapper):
    weight = getattr(wrapper.model, "aux_weight", 0.0)

    def loss_fn(out, y):
        loss = F.cross_entropy(out, y)
        for a in wrapper.aux:
            loss = loss + weight * F.cross_entropy(a, y)
        return loss
    return loss_fn


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=common.RESUME_EPILOG,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help=f"one of: {', '.join(models.list_models())}")
    p.add_argument("--image-size", type=int, default=32, help="side of the resized images")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra model option, e.g. --option modern=True --option groups=2")
    common.add_common_args(p, dataset="fashion-mnist", epochs=2, lr=0.01, weight_decay=5e-4)
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.explicit = common.explicit_options(parser, sys.argv[1:] if argv is None else argv)
    common.check_common_args(args)
    if args.model not in models.list_models():
        close = difflib.get_close_matches(args.model, models.list_models(), n=3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise BadInput(f"unknown model {args.model!r}.{hint} Available: {', '.join(models.list_models())}.")
    if args.image_size < 1:
        raise BadInput(f"--image-size must be a positive whole number, got {args.image_size}.")
    args.options = dict(_parse_option_checked(o) for o in args.option)
    if args.resume and args.out is None:
        raise BadInput("--resume needs --out, the folder of the run to continue.")
    return args


def _parse_option(text):
    key, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, {"True": True, "False": False}.get(value, value)


def _parse_option_checked(text):
    if "=" not in text:
        raise BadInput(f"--option {text!r}: expected KEY=VALUE, e.g. --option modern=True.")
    return _parse_option(text)


def make_model(args, fill=True):
    """The model of ``--model`` with ``--option``s; ``fill=False`` leaves the weights unfilled (shapes only)."""
    try:
        if fill:
            return models.get_model(args.model, num_classes=10, in_channels=1, **args.options)
        with skip_init():
            return models.get_model(args.model, num_classes=10, in_channels=1, **args.options)
    except (TypeError, ValueError) as e:
        options = f" with --option {' '.join(args.option)}" if args.option else ""
        raise BadInput(f"--model {args.model}{options} cannot be built: {e}.") from None


def check_model(args):
    """Refuse early a model that does not take ``--option`` or images of ``--image-size`` (shapes only)."""

    def fits(model, size):
        try:
            tinyconv.summary(model, (1, size, size), depth=1)
            return True
        except (ValueError, RuntimeError, IndexError):
            return False

    probe = make_model(args, fill=False)
    if not fits(probe, args.image_size):
        lo, hi = args.image_size + 1, 512                  # the smallest size that fits (sizes fit upwards)
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if fits(probe, mid) else (mid + 1, hi)
        need = f"at least {lo}x{lo}" if fits(probe, lo) else "another size"
        if args.model == "lenet5":
            need = "exactly 32x32"
        raise BadInput(f"--model {args.model} cannot take {args.image_size}x{args.image_size} images (a layer's "
                       f"output would be empty or the wrong size): it needs {need}; pass --image-size accordingly.")


def run(args):
    tinyconv.backend.xp_for(args.device)
    tinyconv.set_num_threads(args.threads)
    common.check_out(args)
    ckpt = os.path.join(args.out, CHECKPOINT_NAME) if args.out else None
    done = common.resume_settings(args, args.explicit, KEPT, ckpt) if ckpt else 0
    args.options = dict(_parse_option_checked(o) for o in args.option)
    check_model(args)
    train, test, described, _ = common.load_data(args)
    print(f"data: {described}", flush=True)
    _, _, mean, std = DATASETS[args.dataset]
    prep = [T.ToFloat(), T.Normalize(mean, std), Resize(args.image_size), AddChannel()]
    augment = T.Compose([T.RandomCrop(28, padding=2)] + prep)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, seed=args.seed, transform=augment,
                              device=args.device)
    test_loader = DataLoader(test, batch_size=256, transform=T.Compose(prep), device=args.device)
    tinyconv.manual_seed(args.seed)
    model = make_model(args)                   # weights drawn from the seed
    print(tinyconv.summary(model, (1, args.image_size, args.image_size), depth=1))
    if done:
        print(f"resuming after epoch {done} with the checkpoint's settings", flush=True)
    wrapper = MainOutput(model)
    optimizer = tinyconv.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                   weight_decay=args.weight_decay)
    scheduler = tinyconv.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    watch = common.StepWatch(optimizer, len(train_loader), num_classes=10)
    history = fit(
        wrapper, train_loader, test_loader, optimizer, make_loss(wrapper), args.epochs, scheduler=scheduler,
        device=args.device, checkpoint_dir=args.out, resume=args.resume, progress=not args.no_progress,
        history_path=None if args.out is None else os.path.join(args.out, "history"),
        extra={k: getattr(args, k) for k in KEPT}, on_step_end=watch)
    best = max(r["test_acc1"] for r in history)
    print(f"dataset used: {described}; {args.model} at {args.image_size}x{args.image_size}: best test top-1 "
          f"{best:.2%}, final {history[-1]['test_acc1']:.2%} (after {len(history)} epochs)")


def main(argv=None):
    return common.run_main(run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
