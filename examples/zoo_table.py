"""Every registered model's parameters and multiply-accumulates next to the published figures.

    python examples/zoo_table.py [--models vgg16 resnet50 ...] [--reference PATH]

For each model of ``tinyconv.models.list_models()`` it builds the network without filling its weights
(``nn.init.skip_init``), counts the parameters and runs ``tinyconv.summary`` at the reference input size (shape
propagation only, so the whole zoo takes seconds), then prints them beside

- the reference table (``tests/fixtures/zoo_reference.tsv``: torchvision, timm, or built from the paper's table),
- the lectures' comparison table (year, top-1, top-5 and parameters in millions, lecture 000),
- ResNet's FLOPs row of the ResNet paper's Table 1 (1.8, 3.6, 3.8, 7.6, 11.3 x 10^9: multiply-adds, lecture 002).

Models without a reference row print only their own figures; lectures' models missing from the registry are
listed at the end.  The GMACs count convolutions and matrix products only, as the reference does.
"""
import argparse
import csv
import os
import sys

import tinyconv
from tinyconv import models
from tinyconv.nn.init import skip_init

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_REFERENCE = os.path.join(HERE, "..", "tests", "fixtures", "zoo_reference.tsv")

# tinyconv name -> name in the reference table (None: no row); a name not listed maps to itself.
REFERENCE_NAME = {
    "alexnet": "alexnet_paper_ungrouped",
    "alexnet_torchvision": "alexnet",
    "googlenet_torchvision": "googlenet",
    "googlenet": None,                     # the paper's GoogLeNet is in no library
    "xception": "legacy_xception",
    "seresnet50": "legacy_seresnet50", "se_resnet50": "legacy_seresnet50",
    "mobilenet_v1": "mobilenetv1_100", "mobilenetv1": "mobilenetv1_100",
    "nasnet_a_large": "nasnetalarge", "nasnetalarge": "nasnetalarge",
}
EXTRA_ROWS = [("alexnet", {"groups": 2}, "alexnet_paper_grouped")]

# The lectures' comparison table (000, "Сравнение качества классификации и сложности глубоких моделей (1)"):
# tinyconv name -> (model as the lecture names it, year, top-1 %, top-5 %, parameters in millions or None).
LECTURES = {
    "alexnet": ("AlexNet", 2012, 63.3, 84.6, 60),
    "overfeat_accurate": ("OverFeat", 2013, 66.04, 86.76, None),
    "vgg16": ("VGG-16", 2014, 74.4, 91.9, 138),
    "googlenet": ("GoogLeNet", 2014, 69.8, 89.9, 5),
    "resnet101": ("ResNet-101", 2015, 78.25, 93.95, 40),
    "inception_v2": ("Inception-v2", 2015, 74.8, 92.2, 11.2),
    "inception_v3": ("Inception-v3", 2015, 78.8, 94.4, 23.8),
    "densenet201": ("DenseNet-201", 2016, 78.54, 94.46, 20),
    "xception": ("Xception", 2016, 79, 94.5, 22.8),
    "mobilenet_v1": ("MobileNet-224", 2017, 70.6, 89.5, None),
    "resnext101_64x4d": ("ResNeXT-101 64x4", 2017, 80.9, 95.6, 83.6),
    "efficientnet_b0": ("EfficientNet-B0", 2019, 76.3, 93.2, 5.3),
    "efficientnet_b7": ("EfficientNet-B7", 2019, 84.4, 97.1, 66),
}
# ResNet paper, Table 1, the FLOPs row (multiply-adds at 224x224), as in lecture 002.
RESNET_FLOPS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


def load_reference(path):
    with open(path) as f:
        return {row["model"].split()[0]: row for row in csv.DictReader(f, delimiter="\t")}


def input_size(name, ref):
    """The reference row's input size; otherwise 32 for LeNet, 299 for the Inception-v3 family, else 224."""
    if ref is not None:
        return int(ref["input"])
    if name.startswith("lenet"):
        return 32
    if name.startswith(("inception_v3", "inception_v4", "inception_resnet", "xception")):
        return 299
    return 224


def measure(name, options, size):
    """(parameters, parameters without auxiliary heads, GMACs at ``size``) of a registered model, without
    filling or running its weights (the auxiliary heads do not run in evaluation mode)."""
    with skip_init():
        model = models.get_model(name, **options)
    channels = 1 if name.startswith("lenet") else 3
    s = tinyconv.summary(model, (channels, size, size), depth=1)
    main = sum(p.numel() for k, p in model.named_parameters() if not k.startswith(("aux", "AuxLogits")))
    return s.total_params, main, s.total_macs / 1e9


def fmt_params(n):
    return f"{n:,}" if n is not None else ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", help="only these models (default: every registered model)")
    parser.add_argument("--reference", default=DEFAULT_REFERENCE, help="the reference TSV")
    args = parser.parse_args(argv)
    reference = load_reference(args.reference)
    names = args.models or models.list_models()

    jobs = [(n, {}, REFERENCE_NAME.get(n, n)) for n in names]
    jobs += [(n, opt, ref) for n, opt, ref in EXTRA_ROWS if n in names]
    header = (f"{'model':30s} {'params':>13s} {'reference':>13s} {'diff':>6s}  {'GMACs':>9s} {'ref':>9s} "
              f"{'input':>5s}  {'lectures':>8s} {'ResNet':>6s}")
    print(header)
    print("-" * len(header))
    seen = {}
    for name, options, ref_name in sorted(jobs, key=lambda j: (j[0], sorted(j[1].items()))):
        ref = reference.get(ref_name) if ref_name else None
        size = input_size(name, ref)
        try:
            params, main_params, gmacs = measure(name, options, size)
        except Exception as e:  # a model that cannot be summarised is reported, not fatal
            print(f"{name:30s} failed: {type(e).__name__}: {e}")
            continue
        if not options:
            seen[name] = main_params
        label = name + "".join(f" {k}={v}" for k, v in options.items())
        ref_params = int(ref["params"]) if ref else None
        diff = "" if ref is None else ("=" if params == ref_params else f"{params / ref_params - 1:+.1%}")
        lecture = LECTURES.get(name) if not options else None
        print(f"{label:30s} {params:>13,d} {fmt_params(ref_params):>13s} {diff:>6s}  {gmacs:9.4g} "
              f"{(ref['GMACs'].strip() if ref else ''):>9s} {size:>5d}  "
              f"{(str(lecture[4]) + 'M' if lecture and lecture[4] else ''):>8s} "
              f"{(str(RESNET_FLOPS[name]) + 'G' if name in RESNET_FLOPS else ''):>6s}")

    print("\nThe lectures' comparison table, with tinyconv's counts (without auxiliary classifiers):")
    print(f"{'model':18s} {'year':>4s} {'top-1':>6s} {'top-5':>6s} {'params (M)':>10s} {'tinyconv (M)':>12s}")
    for name, (label, year, top1, top5, mparams) in LECTURES.items():
        registered = name in models.list_models()
        ours = (f"{seen[name] / 1e6:.1f}" if name in seen else "failed" if name in names
                else "not selected" if registered else "not registered")
        print(f"{label:18s} {year:4d} {top1:6.2f} {top5:6.2f} {str(mparams or '-'):>10s} {ours:>12s}")
    if any(n in seen for n in ("resnet50", "resnet101", "resnet152")):
        print("\nResNet-50/101/152 count 0.2-0.3 G more than the paper's FLOPs row: torchvision's ResNet (v1.5) "
              "puts the stride-2 of each downsampling bottleneck on its 3x3 convolution, the paper on the 1x1.")
    missing = [n for n in list(LECTURES) + list(RESNET_FLOPS) if n not in models.list_models()]
    if missing:
        print(f"\nnot registered (yet): {', '.join(sorted(set(missing)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
