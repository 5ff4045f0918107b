"""The GPU rows: tinyconv on CuPy against PyTorch on CUDA, side by side in one process.

    python -m benchmarks.gpu                 # on a machine with an NVIDIA GPU, CuPy and (optionally) PyTorch CUDA
    python -m benchmarks.gpu --device cpu    # the same code paths on the CPU (a dry run of the harness)
    python -m benchmarks.gpu --tf32          # tinyconv's float32 products may use TF32, as cuDNN's do by default

Rows (issue targets in brackets): the LeNet-5 training epoch, 60,000 images at batch 64 [at most PyTorch's
time]; convolution forward+backward over the CPU suite's layer table, in GFLOP/s [dense at least 0.5x
PyTorch+cuDNN, depthwise at least 1.0x]; ``resnet18`` and ``mobilenet_v2`` training images/s at batch 64 and
224x224.  GPU work is asynchronous: every timed call ends with a device synchronisation
(``tinyconv.cuda.synchronize()``, ``torch.cuda.synchronize()``), and the warm-up call pays Numba's and
cuDNN's compilation before timing starts.
"""
import argparse
import statistics
import sys
import time

import numpy as np

import tinyconv
import tinyconv.functional as F
import tinyconv.models
from tinyconv import optim

from .workloads import conv_cases, torch

LENET_EPOCH_IMAGES = 60_000


def _sync(device):
    if device == "cuda":
        tinyconv.cuda.synchronize()
        if torch is not None and torch.cuda.is_available():
            torch.cuda.synchronize()


def median_seconds(fn, device, reps):
    """Median wall time of ``fn()`` followed by a device synchronisation, after one untimed warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _torch_device(device):
    if torch is None or (device == "cuda" and not torch.cuda.is_available()):
        return None
    return device


def conv_step(case, device, impl):
    """Forward and backward of one convolution layer on ``device`` (``impl``: tinyconv or torch)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.N, case.C, case.H, case.H), dtype=np.float32)
    w = rng.standard_normal((case.K, case.C // case.groups, case.KH, case.KH), dtype=np.float32) * 0.1
    gy = rng.standard_normal((case.N, case.K, case.OH, case.OH), dtype=np.float32)
    if impl == "torch":
        tx = torch.tensor(x, device=device, requires_grad=True)
        tw = torch.tensor(w, device=device, requires_grad=True)
        tgy = torch.tensor(gy, device=device)
        return lambda: torch.nn.functional.conv2d(tx, tw, None, case.stride, case.padding,
                                                  groups=case.groups).backward(tgy)
    tx = tinyconv.tensor(x, requires_grad=True, device=device)
    tw = tinyconv.tensor(w, requires_grad=True, device=device)
    tgy = tinyconv.tensor(gy, device=device)
    return lambda: F.conv2d(tx, tw, None, case.stride, case.padding, groups=case.groups).backward(tgy)


def train_step(name, batch, size, channels, device, impl):
    """One SGD step (momentum 0.9) of model ``name`` on a fixed random batch already on ``device``."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    if impl == "torch":
        from . import torch_models
        model = torch_models.get_model(name).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        tx, ty = torch.tensor(x, device=device), torch.tensor(y, device=device)

        def step():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(tx), ty).backward()
            opt.step()
        return step
    tinyconv.manual_seed(0)
    model = tinyconv.models.get_model(name, num_classes=10).to(device).train()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tx, ty = tinyconv.tensor(x, device=device), tinyconv.tensor(y, device=device)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(tx), ty).backward()
        opt.step()
    return step


def _row(label, values, unit, higher_is_better):
    tc_v, pt_v = values.get("tinyconv"), values.get("torch")
    ratio = "" if not (tc_v and pt_v) else f"{(tc_v / pt_v if higher_is_better else pt_v / tc_v):.2f}x"
    fmt = (lambda v: "n/a" if v is None else f"{v:.3g}")
    return f"| {label} | {fmt(tc_v)} | {fmt(pt_v)} | {unit} | {ratio} |"


def run(device="cuda", quick=False, out=sys.stdout, tf32=False):
    """Time every GPU row on ``device`` and print a markdown table; returns its lines.  ``tf32``: tinyconv's
    float32 products on the GPU may use TF32 (``tinyconv.cuda.allow_tf32``); PyTorch keeps its defaults."""
    with tinyconv.cuda.allow_tf32(tf32):
        return _run(device, quick, out, tf32)


def _run(device, quick, out, tf32):
    impls = ["tinyconv"] + (["torch"] if _torch_device(device) else [])
    reps = 3 if quick else 10
    lines = [f"## GPU rows on '{device}'" + ("" if "torch" in impls else " (PyTorch CUDA not available)")
             + (" with TF32 allowed in tinyconv's products" if tf32 else ""), "",
             "| row | tinyconv | PyTorch | unit | tinyconv vs PyTorch (higher is better) |",
             "|---|---|---|---|---|"]
    batch = 8 if quick else 64
    values = {impl: LENET_EPOCH_IMAGES / batch * median_seconds(train_step("lenet5", batch, 32, 1, device, impl),
                                                                 device, reps) for impl in impls}
    lines.append(_row(f"LeNet-5 epoch (60,000 images, batch {batch})", values, "s", higher_is_better=False))
    for case in conv_cases("tiny" if quick else "full"):
        values = {impl: case.flops / median_seconds(conv_step(case, device, impl), device, reps) / 1e9
                  for impl in impls}
        lines.append(_row(f"conv fwd+bwd {case.name} ({case.describe()})", values, "GFLOP/s", True))
    size, batch = (32, 2) if quick else (224, 64)
    for name in ("resnet18", "mobilenet_v2"):
        values = {impl: batch / median_seconds(train_step(name, batch, size, 3, device, impl), device, reps)
                  for impl in impls}
        lines.append(_row(f"{name} training (batch {batch}, {size}x{size})", values, "images/s", True))
    for line in lines:
        print(line, file=out, flush=True)
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions")
    p.add_argument("--tf32", action="store_true", help="allow TF32 in tinyconv's float32 products on the GPU")
    args = p.parse_args(argv)
    if args.device == "cuda" and not tinyconv.cuda.is_available():
        print("benchmarks.gpu: CUDA is not available (needs CuPy and an NVIDIA GPU: pip install -e '.[cuda]'); "
              "--device cpu runs the same rows on the CPU", file=sys.stderr)
        return 2
    run(args.device, args.quick, tf32=args.tf32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
