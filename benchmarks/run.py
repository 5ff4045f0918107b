"""tinyconv against PyTorch, side by side in one process: ``python -m benchmarks [--quick]``.

Times, on the same data and weights, tinyconv's default CPU path (Numba kernels), tinyconv on its NumPy
reference kernels and PyTorch (when installed).  Sections (``--only``): ``lenet`` LeNet-5 training steps;
``epoch`` the MNIST epoch of ``examples/train_lenet.py``, data loading and evaluation included
(``lenet_epoch.py``); ``conv`` one convolution's forward + backward for the layer shapes of the classic
networks; ``models`` training steps of ResNet-18, MobileNet v2 and VGG-11; ``zoo`` training steps of
EfficientNet-B0, DenseNet-121, GoogLeNet and ConvNeXt-T; ``inference`` batch-1 latency of ResNet-50 and
MobileNet v2 at 224x224; ``scaling`` ResNet-18's step cost over batch and image sizes (``zoo.py``);
``memory`` the peak memory of a training step or an inference (each in a fresh process, see ``memory.py``);
``gemm`` NumPy's float32 GEMM, the ceiling of im2col + GEMM.  Prints markdown tables and writes them, with the
machine, to ``benchmarks/RESULTS.md`` (a full run) or ``benchmarks/RESULTS-partial.md`` (``--quick`` or some
sections only; git-ignored).

Numba's compilation (or its load from the on-disk cache) is paid in a warm-up before anything is timed and
reported on its own line.  Times are medians over rounds in which the implementations alternate
(``timing.py``), so a change in the machine's load hits all of them alike; the ratios are what to read.
"""
import argparse
import math
import os
import sys
import time

if __package__ in (None, ""):  # ``python benchmarks/run.py``: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks import lenet_epoch, machine, memory, workloads, zoo  # noqa: E402
from benchmarks.tables import Table, fmt, ratio_cell, verdict  # noqa: E402
from benchmarks.timing import measure  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# The targets of issue #17 ("CPU speed, round 2"), against the newest PyTorch the registry serves.
# name, batch, input size, channels, target (tinyconv speed / PyTorch speed at least)
MODELS = [("resnet18", 16, 64, 3, 1.0), ("mobilenet_v2", 16, 64, 3, 1.0), ("vgg11", 4, 64, 3, 1.0)]
CONV_TARGETS = {"ResNeXt grouped 3x3": 2.0, "MobileNetV2 depthwise 3x3": 2.0, "AlexNet conv1 11x11/4": 1.0,
                "VGG 3x3": 1.0, "ResNet 3x3": 1.0, "ResNet 1x1": 1.0}
LENET_TARGET = 2.0    # at most half of PyTorch's step time
MEMORY_TARGET = 1.0   # tinyconv's peak at most PyTorch's
ZOO_TARGET = 1.0      # the rows without a number of their own: "ahead of the newest PyTorch on every row"
# label, tinyconv model, batch, input size, target: the larger zoo models' training steps (zoo.py)
ZOO = [("efficientnet_b0", "efficientnet_b0", 16, 64, ZOO_TARGET),
       ("densenet121", "densenet121", 16, 64, ZOO_TARGET),
       ("googlenet", "googlenet_torchvision", 16, 64, ZOO_TARGET),
       ("convnext_tiny", "convnext_tiny", 16, 64, ZOO_TARGET)]
INFERENCE = [("resnet50", 1, 224, ZOO_TARGET), ("mobilenet_v2", 1, 224, ZOO_TARGET)]


class Config:
    """Sizes and repetitions: ``full`` (the numbers in RESULTS.md), ``quick`` (a few minutes on an idle
    2-core machine) and ``tiny`` (the smoke test: every code path, minimal sizes)."""

    def __init__(self, scale="full", reps=None):
        self.scale = scale
        self.reps = reps or {"full": 7, "quick": 3, "tiny": 1}[scale]
        self.big_reps = reps or {"full": 3, "quick": 2, "tiny": 1}[scale]  # zoo, scaling: seconds a call
        self.min_sample = {"full": 0.2, "quick": 0.1, "tiny": 0.0}[scale]
        self.settle = 0.0 if scale == "tiny" else 0.12  # OpenBLAS spins ~2**28 cycles before sleeping
        self.lenet_batches = {"full": [64, 128], "quick": [64], "tiny": [2]}[scale]
        self.conv = workloads.conv_cases(scale)
        small = {"full": None, "quick": (4, 32), "tiny": (2, 32)}[scale]   # batch, size of the zoo rows
        if scale == "full":
            self.models = MODELS
        elif scale == "quick":
            self.models = [(n, max(2, b // 4), s, c, t) for n, b, s, c, t in MODELS]
        else:
            self.models = [("resnet18", 2, 32, 3, 1.0)]
        self.zoo = ZOO if small is None else [(lb, n, small[0], small[1], t) for lb, n, _, _, t in ZOO]
        self.inference = INFERENCE if small is None else [(n, 1, {"quick": 96, "tiny": 32}[scale], t)
                                                          for n, _, _, t in INFERENCE]
        # ResNet-18 steps: the batch sweep at one size, the image-size sweep at one batch (zoo.bench_scaling)
        self.scaling_model, self.scaling_tolerance = "resnet18", 0.25
        self.scaling_size, self.scaling_batches, self.scaling_batch, self.scaling_sizes = {
            "full": (64, [1, 16, 64], 16, [32, 64, 128, 224]), "quick": (64, [1, 4], 4, [32, 64, 96]),
            "tiny": (32, [2, 4], 2, [32, 48])}[scale]
        # the MNIST epoch of examples/train_lenet.py (lenet_epoch.bench_epoch): train / test images, epochs
        self.epoch_data_dir = None
        self.epoch_limit = {"full": None, "quick": (6400, 1000), "tiny": (128, 64)}[scale]
        self.epoch_reps = reps or {"full": 2, "quick": 1, "tiny": 1}[scale]
        # peak memory: (model, batch, size, kind) with kind "train" (a training step) or "infer"
        self.memory = [("lenet5", b, 32, "train") for b in self.lenet_batches[:1]]
        self.memory += [(n, b, s, "train") for n, b, s, _, _ in (self.models if scale != "full" else MODELS)]
        self.memory += [(n, b, s, "train") for _, n, b, s, _ in self.zoo]
        self.memory += [(n, b, s, "infer") for n, b, s, _ in self.inference]
        if scale == "tiny":
            self.memory = self.memory[:1] + self.memory[-1:]
        self.gemm_n = {"full": 2048, "quick": 1024, "tiny": 64}[scale]


def warm_up(config, impls):
    """Compile (or load from Numba's cache) every kernel the timed workloads use; returns seconds."""
    start = time.perf_counter()
    tiny = Config("tiny")
    for case in tiny.conv:
        case.build(["tinyconv"])["tinyconv"]()
    for name in ("lenet5", "resnet18", "mobilenet_v2"):
        if workloads.tinyconv_model(name) is not None:
            step, _ = workloads.training_step("tinyconv", name, 2, 32, 1 if name == "lenet5" else 3)
            step()
    return time.perf_counter() - start


def bench_lenet(config, impls, out):
    cols = [f"{i} ms/step" for i in impls] + ["speed vs PyTorch", "s per 60k epoch (tinyconv / PyTorch)", "target met"]
    table = Table("1. LeNet-5 training step (1x32x32, SGD momentum, cross-entropy)", ["batch"] + cols, out)
    for batch in config.lenet_batches:
        steps = {i: workloads.training_step(i, "lenet5", batch, 32, 1)[0] for i in impls}
        t = measure(steps, config.reps, config.min_sample, settle=config.settle)
        ratio = t["torch"]["median"] / t["tinyconv"]["median"] if "torch" in t else None
        epochs = " / ".join(fmt(t[i]["median"] * math.ceil(60000 / batch)) for i in ("tinyconv", "torch") if i in t)
        table.add([batch] + [fmt(1e3 * t[i]["median"]) for i in impls] +
                  [ratio_cell(ratio), epochs, verdict(ratio, LENET_TARGET)])
    return table


def bench_conv(config, impls, out):
    table = Table("3. Convolution forward + backward (GFLOP/s, FLOPs = 3 x 2 x MACs; dx, dW and db computed)",
                  ["layer", "shape"] + [f"{i} GFLOP/s" for i in impls] + ["speed vs PyTorch", "target met"], out)
    for case in config.conv:
        t = measure(case.build(impls), config.reps, config.min_sample, settle=config.settle)
        gflops = {i: case.flops / t[i]["median"] / 1e9 for i in impls}
        ratio = gflops["tinyconv"] / gflops["torch"] if "torch" in gflops else None
        table.add([case.name, case.describe()] + [fmt(gflops[i]) for i in impls] +
                  [ratio_cell(ratio), verdict(ratio, CONV_TARGETS.get(case.name))])
    return table


def bench_models(config, impls, out):
    table = Table("4. Training steps of the zoo (10 classes, SGD momentum, cross-entropy; images/s)",
                  ["model", "batch, input"] + [f"{i} img/s" for i in impls] + ["speed vs PyTorch", "target met"], out)
    for name, batch, size, channels, target in config.models:
        if name not in workloads.tinyconv.models.list_models():
            table.add([name, f"{batch}, {size}x{size}"] + ["n/a"] * (len(impls) + 1) + ["not registered yet"])
            continue
        steps, params = {}, {}
        for i in impls:
            steps[i], model = workloads.training_step(i, name, batch, size, channels)
            params[i] = workloads.num_parameters(model)
        if len(set(params.values())) > 1:
            table.note(f"{name}: parameter counts differ between implementations: {params}")
        t = measure(steps, config.reps, config.min_sample, settle=config.settle)
        ips = {i: batch / t[i]["median"] for i in impls}
        ratio = ips["tinyconv"] / ips["torch"] if "torch" in ips else None
        table.add([name, f"{batch}, {channels}x{size}x{size}"] + [fmt(ips[i]) for i in impls] +
                  [ratio_cell(ratio), verdict(ratio, target)])
    return table


def bench_memory(config, impls, out):
    impls = [i for i in ("tinyconv", "torch") if i in impls]
    table = Table("8. Peak memory of a training step or an inference (MiB above the model's weights, fresh "
                  "process each)", ["model", "work", "batch, input"] + [f"{i} MiB" for i in impls] +
                  ["tinyconv / PyTorch", "target met"], out)
    method = set()
    for name, batch, size, kind in config.memory:
        if name not in workloads.tinyconv.models.list_models():
            continue
        here = [i for i in impls if i != "torch" or workloads.has_torch_model(name)]
        res = {i: memory.run_child(i, name, batch, size, kind) for i in here}
        cells = []
        for i in impls:
            if i not in res:
                cells.append("n/a")
            elif "error" in res[i]:
                cells.append("error: " + res[i]["error"][:60])
            else:
                cells.append(fmt(res[i]["peak_mib"]))
                method.add(res[i]["method"])
        ok = all("error" not in r for r in res.values()) and "torch" in res
        ratio = res["tinyconv"]["peak_mib"] / max(res["torch"]["peak_mib"], 1e-3) if ok else None
        channels = 1 if name == "lenet5" else 3
        table.add([name, "training step" if kind == "train" else "inference", f"{batch}, {channels}x{size}x{size}"]
                  + cells + [ratio_cell(ratio), verdict(ratio, MEMORY_TARGET, at_least=False)])
    table.note("Method: " + ", ".join(sorted(method)) + " (see `benchmarks/memory.py`): the resident-set "
               "high-water mark during the first training step (or forward pass in eval mode without gradients) "
               "of a fresh model, after a warm-up on a tiny copy of the architecture, minus the RSS just before "
               "it: activations, gradients, momentum buffers.  The GoogLeNet row is `googlenet_torchvision`.")
    return table


def bench_gemm(config, impls, out):
    n = config.gemm_n
    t = measure(workloads.gemm(impls, n), config.reps, config.min_sample, settle=config.settle)
    table = Table(f"9. float32 GEMM {n}x{n} @ {n}x{n} (the practical ceiling of im2col + GEMM)",
                  ["library", "GFLOP/s"], out)
    labels = {"numpy": "NumPy `matmul` (its BLAS)", "torch": "PyTorch `mm`"}
    for i, r in t.items():
        table.add([labels[i], fmt(2 * n ** 3 / r["median"] / 1e9)])
    return table


SECTIONS = {"lenet": bench_lenet, "epoch": lenet_epoch.bench_epoch, "conv": bench_conv, "models": bench_models,
            "zoo": zoo.bench_zoo, "inference": zoo.bench_inference, "scaling": zoo.bench_scaling,
            "memory": bench_memory, "gemm": bench_gemm}


def run(config, sections=tuple(SECTIONS), with_numpy=True, with_torch=True, out=sys.stdout, results_path=None,
        command="python -m benchmarks"):
    """Run the chosen sections; write ``results_path`` (markdown) when given; return the tables."""
    impls = workloads.implementations(with_numpy, with_torch)
    torch = workloads.torch if "torch" in impls else None
    if out is not None:
        print(f"tinyconv benchmarks ({config.scale}): {', '.join(impls)}", file=out, flush=True)
    compile_s = warm_up(config, impls)
    compile_line = (f"Numba compilation / cache load, paid before timing: {compile_s:.1f} s "
                    f"(first calls of every kernel the workloads use)")
    if out is not None:
        print(compile_line, file=out, flush=True)
    start = time.perf_counter()
    tables = [SECTIONS[s](config, impls, out) for s in SECTIONS if s in sections]
    elapsed = time.perf_counter() - start
    if results_path:
        text = report(config, impls, tables, compile_line, elapsed, torch, command)
        kept = gpu_section(open(results_path).read()) if os.path.exists(results_path) else ""
        tmp = results_path + ".tmp"
        with open(tmp, "w") as f:  # written beside, then renamed: a killed run leaves the old report whole
            f.write(text.rstrip("\n") + "\n" + ("\n" + kept if kept else ""))
        os.replace(tmp, results_path)
    return tables


GPU_HEADING = "## GPU results"
PARTIAL_RESULTS = "RESULTS-partial.md"  # quick and partial runs report here (git-ignored), not in RESULTS.md


def gpu_section(text):
    """The part of an earlier report from its ``## GPU results`` heading on: measured on another machine
    (``python -m benchmarks.gpu``, pasted by hand), it is kept when the CPU sections are rewritten."""
    start = text.find("\n" + GPU_HEADING)
    return "" if start < 0 else text[start + 1:].rstrip("\n") + "\n"


def report(config, impls, tables, compile_line, elapsed, torch, command):
    lines = ["# tinyconv benchmark results", "",
             f"Written by `{command}` ({config.scale} run, {elapsed / 60:.1f} min of timing).  "
             "Columns: `tinyconv` is the default CPU path (Numba kernels), `numpy` is tinyconv on its NumPy "
             "reference kernels (`backend.use_kernels('numpy')`), `torch` is PyTorch on the CPU.  "
             "Medians of interleaved rounds; \"speed vs PyTorch\" is PyTorch's time over tinyconv's "
             "(above 1: tinyconv is faster).", "", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in machine.describe(torch)]
    lines += ["", f"- {compile_line}", "", "## Results", ""]
    lines += [t.markdown() for t in tables]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller batches and fewer rounds (about a minute)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    p.add_argument("--reps", type=int, default=None, help="timed rounds per workload (default 7, quick 3)")
    p.add_argument("--no-numpy", action="store_true", help="skip tinyconv's NumPy reference path")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    p.add_argument("--output", default=None,
                   help="markdown report ('' to skip); default: benchmarks/RESULTS.md for a full run of every "
                        f"section, else benchmarks/{PARTIAL_RESULTS} (git-ignored), so a quick or partial run "
                        "never replaces the committed full results")
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    command = "python -m benchmarks" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    if args.output is None:
        full = (not args.quick and args.reps is None and set(sections) == set(SECTIONS)
                and not args.no_numpy and not args.no_torch)
        args.output = os.path.join(HERE, "RESULTS.md" if full else PARTIAL_RESULTS)
    run(Config("quick" if args.quick else "full", args.reps), sections, not args.no_numpy, not args.no_torch,
        results_path=args.output or None, command=command)


if __name__ == "__main__":
    main()
