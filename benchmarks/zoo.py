"""The rows a user of the model zoo meets: training steps of the larger models, inference latency, and how the
cost of a training step grows with the batch and the image size.

- ``zoo``: training steps (SGD momentum, cross-entropy, 10 classes) of EfficientNet-B0, DenseNet-121, GoogLeNet
  (torchvision's, with batch norm and its two auxiliary classifiers, their losses weighted 0.3) and ConvNeXt-T,
  each against torchvision's model of the same name: the parameter shapes are checked to agree.
- ``inference``: one image (batch 1, 3x224x224, 1000 classes) through ResNet-50 and MobileNet v2 in
  evaluation mode without gradients, in milliseconds per image.
- ``scaling``: ResNet-18 training steps over batch sizes at one image size, and over image sizes at one batch
  size; the work of a step is its forward multiply-adds (``tinyconv.summary``; the backward costs about twice
  as much, for every size alike).  Time per unit of work that rises by more than the stated tolerance above
  its lowest at any smaller size is flagged: growth worse than linear in the work.

These rows are large for a 2-core machine: they run fewer rounds (``Config.big_reps``) and without the
``numpy`` column (tinyconv on its NumPy references would take minutes a row: its depthwise and grouped
reference convolutions loop over groups in Python); each table says so.
"""
from . import workloads
from .tables import Table, fmt, ratio_cell, verdict
from .timing import measure

SKIPPED_NUMPY = ("The `numpy` column (tinyconv on its NumPy reference kernels) is not run for these rows: it "
                 "would take minutes a row on 2 cores.")


def _impls(impls):
    return [i for i in impls if i != "numpy"]


def _twins_agree(name, models, table):
    """Note on ``table`` when the two frameworks' models do not have the same parameter shapes."""
    from . import torch_models
    if "torch" not in models:
        return
    shapes = {i: torch_models.parameter_shapes(m) for i, m in models.items()}
    if shapes["torch"] != shapes["tinyconv"]:
        counts = {i: workloads.num_parameters(m) for i, m in models.items()}
        table.note(f"{name}: the parameter shapes differ between tinyconv and PyTorch (counts {counts}).")


def _available(name, impls):
    """The implementations that can run ``name`` here (PyTorch's twin may need torchvision)."""
    return [i for i in impls if i != "torch" or workloads.has_torch_model(name)]


def bench_zoo(config, impls, out):
    impls = _impls(impls)
    table = Table("5. Training steps of the larger zoo models (10 classes, SGD momentum, cross-entropy; images/s)",
                  ["model", "batch, input", "parameters"] + [f"{i} img/s" for i in impls] +
                  ["speed vs PyTorch", "target met"], out)
    for label, name, batch, size, target in config.zoo:
        here = _available(name, impls)
        steps, models = {}, {}
        for i in here:
            steps[i], models[i] = workloads.training_step(i, name, batch, size, 3)
        _twins_agree(label, models, table)
        t = measure(steps, config.big_reps, config.min_sample, settle=config.settle)
        ips = {i: batch / t[i]["median"] for i in here}
        ratio = ips["tinyconv"] / ips["torch"] if "torch" in ips else None
        table.add([label, f"{batch}, 3x{size}x{size}", f"{workloads.num_parameters(models['tinyconv']):,}"] +
                  [fmt(ips.get(i)) for i in impls] + [ratio_cell(ratio), verdict(ratio, target)])
        del steps, models
    table.note("GoogLeNet is tinyconv's `googlenet_torchvision` (torchvision's layout: batch norm, no LRN, 3x3 in "
               "the \"5x5\" branch) against torchvision's `googlenet`; tinyconv's `googlenet` is the paper's network "
               "(LRN, true 5x5 convolutions, no batch norm, more parameters), which torchvision does not have.  "
               + SKIPPED_NUMPY)
    return table


def bench_inference(config, impls, out):
    impls = _impls(impls)
    table = Table("6. Inference latency (batch 1, eval mode, no gradients, 1000 classes; ms per image)",
                  ["model", "input"] + [f"{i} ms" for i in impls] + ["speed vs PyTorch", "target met"], out)
    for name, batch, size, target in config.inference:
        here = _available(name, impls)
        steps, models = {}, {}
        for i in here:
            steps[i], models[i] = workloads.inference_step(i, name, batch, size)
        _twins_agree(name, models, table)
        t = measure(steps, config.reps, config.min_sample, settle=config.settle)
        ms = {i: 1e3 * t[i]["median"] / batch for i in here}
        ratio = ms["torch"] / ms["tinyconv"] if "torch" in ms else None
        table.add([name, f"{batch}x3x{size}x{size}"] + [fmt(ms.get(i)) for i in impls] +
                  [ratio_cell(ratio), verdict(ratio, target)])
    table.note(SKIPPED_NUMPY)
    return table


def scaling_points(config):
    """``[(sweep, batch, size)]``: the batch sweep at ``scaling_size``, then the size sweep at ``scaling_batch``."""
    pts = [("batch", b, config.scaling_size) for b in config.scaling_batches]
    return pts + [("size", config.scaling_batch, s) for s in config.scaling_sizes]


def flag_superlinear(per_work, tolerance):
    """For each point of a sweep (sorted by work), the rise of its time per unit of work over the lowest at
    the smaller points before it (1.0 for the first), and whether that rise exceeds ``1 + tolerance``."""
    out, best = [], None
    for v in per_work:
        rise = 1.0 if best is None or v is None else v / best
        out.append((rise, rise > 1 + tolerance))
        if v is not None:
            best = v if best is None else min(best, v)
    return out


def bench_scaling(config, impls, out):
    impls = _impls(impls)
    name, tol = config.scaling_model, config.scaling_tolerance
    cols = []
    for i in impls:
        cols += [f"{i} ms/step", f"{i} ms per forward GMAC", f"{i} rise"]
    table = Table(f"7. How a {name} training step's cost grows with the batch and the image size",
                  ["sweep", "batch, input", "forward GMACs"] + cols, out)
    rows, done = {}, {}
    for sweep, batch, size in scaling_points(config):
        if (batch, size) not in done:   # the point both sweeps share is measured once
            steps = {i: workloads.training_step(i, name, batch, size, 3)[0] for i in impls}
            done[batch, size] = measure(steps, config.big_reps, config.min_sample, settle=config.settle)
            del steps
        rows.setdefault(sweep, []).append((batch, size, workloads.forward_macs(name, batch, size) / 1e9,
                                           done[batch, size]))
    flagged = []
    for sweep, points in rows.items():
        per_work = {i: [t[i]["median"] * 1e3 / g for _, _, g, t in points] for i in impls}
        rises = {i: flag_superlinear(per_work[i], tol) for i in impls}
        for k, (batch, size, g, t) in enumerate(points):
            cells = []
            for i in impls:
                rise, bad = rises[i][k]
                cells += [fmt(t[i]["median"] * 1e3), fmt(per_work[i][k]),
                          (f"**{rise:.2f}x superlinear**" if bad else f"{rise:.2f}x")]
                if bad:
                    flagged.append(f"{i} at batch {batch}, {size}x{size}")
            table.add([sweep, f"{batch}, 3x{size}x{size}", fmt(g)] + cells)
    table.note(f"\"rise\": time per forward GMAC over the lowest at the smaller points of the same sweep; above "
               f"{1 + tol:.2f}x (tolerance {tol:.0%}) it is flagged as growth worse than linear in the work.  "
               + ("Flagged: " + "; ".join(flagged) + "." if flagged else "None flagged.") + "  " + SKIPPED_NUMPY)
    return table
