#!/usr/bin/env python
"""Classify an image with a pretrained ImageNet model and print the top-5 labels.

    python examples/classify.py dog.jpg --model resnet50
    python examples/classify.py dog.jpg --model efficientnet_b0 --weights IMAGENET1K_V1

The weights are torchvision's, downloaded once into ``~/.cache/tinyconv/weights`` (hash-checked) and read
without PyTorch; the image is prepared as that weight set expects (resize, centre crop, normalise).  Images
are read with Pillow when it is installed, else with matplotlib (PNG; JPEG needs Pillow); a ``.npy`` file
holding an ``(H, W, 3)`` array works too.

Exit status: 0 done, 2 bad input (missing or unreadable image, unknown model or weights, download failed).
"""
import argparse
import os
import sys

import numpy as np


def read_image(path):
    """An (H, W, 3) array from an image file (Pillow, else matplotlib) or a .npy file."""
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    try:
        from PIL import Image
    except ImportError:
        import matplotlib.image
        return matplotlib.image.imread(path)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image")
    p.add_argument("--model", default="resnet50", help="a zoo model with ImageNet weights (default resnet50)")
    p.add_argument("--weights", default="DEFAULT", help="weight set, e.g. IMAGENET1K_V1 (default: the best)")
    p.add_argument("--topk", type=int, default=5)
    args = p.parse_args(argv)

    import tinyconv as tc
    from tinyconv import models
    from tinyconv.models.pretrained import get_weights, list_weights

    if not os.path.isfile(args.image):
        print(f"classify: image {args.image} does not exist", file=sys.stderr)
        return 2
    if not list_weights(args.model):
        print(f"classify: no pretrained weights for {args.model!r}; choose one of "
              f"{', '.join(sorted(list_weights()))}", file=sys.stderr)
        return 2
    try:
        weights = get_weights(args.model, args.weights)
        image = read_image(args.image)
        x = weights.transforms()(image)
        model = models.get_model(args.model, weights=weights.name)
    except Exception as e:  # unreadable image, bad weights name, download/hash failure: say which, no traceback
        print(f"classify: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    with tc.no_grad():
        probs = tc.softmax(model(x.unsqueeze(0)), dim=1).numpy()[0]
    top = np.argsort(-probs)[: args.topk]
    print(f"{args.image}: {args.model} ({weights.name}, ImageNet top-1 {weights.acc1}%)")
    for i in top:
        print(f"  {probs[i] * 100:6.2f}%  {weights.categories[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
