"""tinyconv against PyTorch, side by side in one process: ``python -m benchmarks [--quick]``.

Times, on the same data and weights, tinyconv's default CPU path (Numba kernels), tinyconv on its NumPy
reference kernels and PyTorch (when installed): LeNet-5 training steps, one convolution's forward + backward
for the layer shapes of the classic networks, training steps of ResNet-18, MobileNet v2 and VGG-11, the peak
memory of a training step (each in a fresh process, see ``memory.py``) and NumPy's float32 GEMM, the ceiling
of im2col + GEMM.  Prints markdown tables and writes them, with the machine, to ``benchmarks/RESULTS.md``
(a full run) or ``benchmarks/RESULTS-partial.md`` (``--quick`` or some sections only; git-ignored).

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

from benchmarks import machine, memory, workloads  # noqa: E402
from benchmarks.timing import measure  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# name, batch, input size, channels, target (tinyconv speed / PyTorch speed at least)
MODELS = [("resnet18", 16, 64, 3, 0.8), ("mobilenet_v2", 16, 64, 3, 1.0), ("vgg11", 4, 64, 3, None)]
CONV_TARGETS = {"ResNeXt grouped 3x3": 2.0, "MobileNetV2 depthwise 3x3": 1.5, "AlexNet conv1 11x11/4": 0.85,
                "VGG 3x3": 0.85, "ResNet 3x3": 0.85, "ResNet 1x1": 0.85}
LENET_TARGET = 2.0    # at most half of PyTorch's step time
MEMORY_TARGET = 1.3   # tinyconv's peak at most 1.3x PyTorch's


class Config:
    """Sizes and repetitions: ``full`` (the numbers in RESULTS.md), ``quick`` (about a minute on an idle
    2-core machine) and ``tiny`` (the smoke test: every code path, minimal sizes)."""

    def __init__(self, scale="full", reps=None):
        self.scale = scale
        self.reps = reps or {"full": 7, "quick": 3, "tiny": 1}[scale]
        self.min_sample = {"full": 0.2, "quick": 0.1, "tiny": 0.0}[scale]
        self.settle = 0.0 if scale == "tiny" else 0.12  # OpenBLAS spins ~2**28 cycles before sleeping
        self.lenet_batches = {"full": [64, 128], "quick": [64], "tiny": [2]}[scale]
        self.conv = workloads.conv_cases(scale)
        if scale == "full":
            self.models = MODELS
        elif scale == "quick":
            self.models = [(n, max(2, b // 4), s, c, t) for n, b, s, c, t in MODELS]
        else:
            self.models = [("resnet18", 2, 32, 3, 0.8)]
        self.memory = [("lenet5", b, 32) for b in self.lenet_batches[:1]]
        self.memory += [(n, b, s) for n, b, s, _, _ in (self.models if scale != "full" else MODELS)]
        if scale == "tiny":
            self.memory = self.memory[:1]
        self.gemm_n = {"full": 2048, "quick": 1024, "tiny": 64}[scale]


def fmt(value, digits=None):
    """A number for the table: ``digits`` decimals, or by default three significant figures."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if digits is None and 0 < abs(value) < 1:
        return f"{value:.3g}"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def verdict(ratio, target, at_least=True):
    if target is None or ratio is None:
        return ""
    ok = ratio >= target if at_least else ratio <= target
    return ("yes" if ok else "**no**") + f" ({'>=' if at_least else '<='} {target:g}x)"


class Table:
    """A markdown table printed row by row as results arrive, and kept for RESULTS.md."""

    def __init__(self, title, header, out):
        self.title, self.header, self.rows, self.out = title, header, [], out
        self.notes = []
        self._print(f"\n### {title}\n")
        self._print("| " + " | ".join(header) + " |")
        self._print("|" + "---|" * len(header))

    def _print(self, line):
        if self.out is not None:
            print(line, file=self.out, flush=True)

    def add(self, row):
        self.rows.append([str(c) for c in row])
        self._print("| " + " | ".join(self.rows[-1]) + " |")

    def note(self, text):
        self.notes.append(text)
        self._print(f"\n{text}")

    def markdown(self):
        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines + [""] + [n + "\n" for n in self.notes])


def _speed(times, impl):
    return times[impl]["median"] if impl in times else None


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
                  [fmt(ratio, 2) + "x" if ratio else "n/a", epochs, verdict(ratio, LENET_TARGET)])
    return table


def bench_conv(config, impls, out):
    table = Table("2. Convolution forward + backward (GFLOP/s, FLOPs = 3 x 2 x MACs; dx, dW and db computed)",
                  ["layer", "shape"] + [f"{i} GFLOP/s" for i in impls] + ["speed vs PyTorch", "target met"], out)
    for case in config.conv:
        t = measure(case.build(impls), config.reps, config.min_sample, settle=config.settle)
        gflops = {i: case.flops / t[i]["median"] / 1e9 for i in impls}
        ratio = gflops["tinyconv"] / gflops["torch"] if "torch" in gflops else None
        table.add([case.name, case.describe()] + [fmt(gflops[i]) for i in impls] +
                  [fmt(ratio, 2) + "x" if ratio else "n/a", verdict(ratio, CONV_TARGETS.get(case.name))])
    return table


def bench_models(config, impls, out):
    table = Table("3. Training steps of the zoo (10 classes, SGD momentum, cross-entropy; images/s)",
                  ["model", "batch, input"] + [f"{i} img/s" for i in impls] + ["speed vs PyTorch", "target met"], out)
    for name, batch, size, channels, target in config.models:
        if workloads.tinyconv_model(name) is None:
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
                  [fmt(ratio, 2) + "x" if ratio else "n/a", verdict(ratio, target)])
    return table


def bench_memory(config, impls, out):
    impls = [i for i in ("tinyconv", "torch") if i in impls]
    table = Table("4. Peak memory of a training step (MiB above the model's weights, fresh process each)",
                  ["model", "batch"] + [f"{i} MiB" for i in impls] + ["tinyconv / PyTorch", "target met"], out)
    method = set()
    for name, batch, size in config.memory:
        if workloads.tinyconv_model(name) is None:
            continue
        res = {i: memory.run_child(i, name, batch, size) for i in impls}
        cells = []
        for i in impls:
            if "error" in res[i]:
                cells.append("error: " + res[i]["error"][:60])
            else:
                cells.append(fmt(res[i]["peak_mib"]))
                method.add(res[i]["method"])
        ok = all("error" not in r for r in res.values()) and "torch" in res
        ratio = res["tinyconv"]["peak_mib"] / max(res["torch"]["peak_mib"], 1e-3) if ok else None
        table.add([name, batch] + cells + [fmt(ratio, 2) + "x" if ratio else "n/a",
                                           verdict(ratio, MEMORY_TARGET, at_least=False)])
    table.note("Method: " + ", ".join(sorted(method)) + " (see `benchmarks/memory.py`): the resident-set "
               "high-water mark during the first step of a fresh model (after a warm-up on a tiny copy of the "
               "architecture) minus the RSS just before it: activations, gradients, momentum buffers.")
    return table


def bench_gemm(config, impls, out):
    n = config.gemm_n
    t = measure(workloads.gemm(impls, n), config.reps, config.min_sample, settle=config.settle)
    table = Table(f"5. float32 GEMM {n}x{n} @ {n}x{n} (the practical ceiling of im2col + GEMM)",
                  ["library", "GFLOP/s"], out)
    labels = {"numpy": "NumPy `matmul` (its BLAS)", "torch": "PyTorch `mm`"}
    for i, r in t.items():
        table.add([labels[i], fmt(2 * n ** 3 / r["median"] / 1e9)])
    return table


SECTIONS = {"lenet": bench_lenet, "conv": bench_conv, "models": bench_models, "memory": bench_memory,
            "gemm": bench_gemm}


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
