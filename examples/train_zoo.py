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
with ``--resume``).
"""
import argparse
import sys

import numpy as np

import tinyconv
import tinyconv.functional as F
from tinyconv import models, nn
from tinyconv.data import MNIST, DataLoader, FashionMNIST, Subset, transforms as T
from tinyconv.train import fit

DATASETS = {"fashion-mnist": (FashionMNIST, 0.2860, 0.3530), "mnist": (MNIST, 0.1307, 0.3081)}


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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help=f"one of: {', '.join(models.list_models())}")
    p.add_argument("--dataset", default="fashion-mnist", choices=sorted(DATASETS))
    p.add_argument("--image-size", type=int, default=32, help="side of the resized images (default 32)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, default=None, help="use only the first N test images")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--data-root", default=None, help="where the dataset files are (default: searched)")
    p.add_argument("--out", default=None, help="folder for checkpoints and the history (default: none)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra model option, e.g. --option modern=True --option groups=2")
    return p.parse_args(argv)


def _parse_option(text):
    key, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, {"True": True, "False": False}.get(value, value)


def main(argv=None):
    args = parse_args(argv)
    tinyconv.manual_seed(args.seed)
    dataset_cls, mean, std = DATASETS[args.dataset]
    train = dataset_cls(root=args.data_root, train=True)
    test = dataset_cls(root=args.data_root, train=False)
    print(train.describe())
    if args.limit_train:
        train = Subset(train, np.arange(min(args.limit_train, len(train))))
    if args.limit_test:
        test = Subset(test, np.arange(min(args.limit_test, len(test))))
    prep = [T.ToFloat(), T.Normalize(mean, std), Resize(args.image_size), AddChannel()]
    augment = T.Compose([T.RandomCrop(28, padding=2)] + prep)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, seed=args.seed, transform=augment)
    test_loader = DataLoader(test, batch_size=256, transform=T.Compose(prep))

    options = dict(_parse_option(o) for o in args.option)
    model = models.get_model(args.model, num_classes=10, in_channels=1, **options)
    print(tinyconv.summary(model, (1, args.image_size, args.image_size), depth=1))
    wrapper = MainOutput(model)
    optimizer = tinyconv.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                   weight_decay=args.weight_decay)
    scheduler = tinyconv.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    history = fit(
        wrapper, train_loader, test_loader, optimizer, make_loss(wrapper), args.epochs, scheduler=scheduler,
        device=args.device, checkpoint_dir=args.out, resume=args.resume,
        history_path=None if args.out is None else f"{args.out}/history", extra=vars(args))
    best = max(r["test_acc1"] for r in history) if history else float("nan")
    print(f"{args.model} on {args.dataset} at {args.image_size}x{args.image_size}: best test top-1 {best:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
