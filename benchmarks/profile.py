"""Where a benchmark row's time goes: a per-op profile of tinyconv next to PyTorch's own, on the same work.

    python -m benchmarks.profile lenet5 --batch 64           # a training step of a zoo model (1x32x32)
    python -m benchmarks.profile resnet18 --batch 16 --size 64
    python -m benchmarks.profile conv "ResNet 3x3"           # one layer of the suite's conv table
    python -m benchmarks.profile resnet50 --inference        # batch-1 inference at 224x224, the suite's row
    python -m benchmarks.profile --rows --output benchmarks/PROFILES.md   # every row that misses a target

tinyconv's side times every ``Function``'s forward and backward by class (the kernels and GEMMs they call
included), and every kernel on its own (``backend.get_kernel``), over ``--steps`` steps after a warm-up;
what is left of the step's wall time is the engine and Python between the ops.  PyTorch's side is
``torch.profiler``'s table of operators (self CPU time) for the same step.  Timings are wall clock on the
current machine and thread settings; a profiled step runs a little slower than an unprofiled one.
"""
import argparse
import contextlib
import os
import sys
import time
from collections import defaultdict

import tinyconv
from tinyconv import backend
from tinyconv.core import Function

from . import workloads


# -- tinyconv: per-op timers --------------------------------------------------------------------------
def _subclasses(cls):
    out, stack = [], [cls]
    while stack:
        c = stack.pop()
        for s in c.__subclasses__():
            out.append(s)
            stack.append(s)
    return out


@contextlib.contextmanager
def op_timers():
    """Time ``forward``/``backward`` of every Function class and every kernel while active.

    Yields ``totals``: ``{(kind, name): [calls, seconds]}`` with kind ``'forward'``, ``'backward'`` or
    ``'kernel'`` or ``'optimizer'`` (``Optimizer.step``).  A Function nested in another's forward counts in
    both.
    """
    totals = defaultdict(lambda: [0, 0.0])
    patched = []

    def timed(kind, name, fn):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:  # a method inherited (Add from _Binary) counts under the class that ran it
                who = type(args[0]).__name__ if kind in ("forward", "backward", "optimizer") else name
                entry = totals[(kind, who)]
                entry[0] += 1
                entry[1] += time.perf_counter() - t0
        return run

    for cls in _subclasses(Function):
        for kind in ("forward", "backward"):
            if kind in cls.__dict__:
                patched.append((cls, kind, cls.__dict__[kind]))
                setattr(cls, kind, timed(kind, cls.__name__, cls.__dict__[kind]))
    from tinyconv.optim import Optimizer
    for cls in [Optimizer] + _subclasses(Optimizer):
        if "step" in cls.__dict__:
            patched.append((cls, "step", cls.__dict__["step"]))
            setattr(cls, "step", timed("optimizer", cls.__name__, cls.__dict__["step"]))
    # the ops call get_kernel as imported into their own modules: swap it there too
    get_kernel = backend.get_kernel
    users = [m for name, m in list(sys.modules.items())
             if name.startswith("tinyconv") and getattr(m, "get_kernel", None) is get_kernel]
    import tinyconv_kernels

    def timed_get(name, x):  # a composite kernel (conv2d_forward) is timed through the primitives it calls
        fn = get_kernel(name, x)
        return fn if tinyconv_kernels.is_composite(name) else timed("kernel", name, fn)
    primitive = backend._primitive  # what composite kernels call for their primitives
    for m in users:
        m.get_kernel = timed_get
    backend._primitive = lambda name, target: timed("kernel", name, primitive(name, target))
    try:
        yield totals
    finally:
        backend._primitive = primitive
        for m in users:
            m.get_kernel = get_kernel
        for cls, kind, fn in patched:
            setattr(cls, kind, fn)


def profile_tinyconv(step, steps):
    """Run ``step`` once untimed, then ``steps`` times under ``op_timers``; returns (seconds/step, totals)."""
    step()
    with op_timers() as totals:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - t0
    return wall / steps, {k: (c / steps, s / steps) for k, (c, s) in totals.items()}


def tinyconv_table(per_step, totals, top=12):
    """Markdown: the ops (forward and backward side by side), then the kernels, as shares of the step."""
    ops = defaultdict(lambda: [0.0, 0.0, 0.0])
    for (kind, name), (calls, s) in totals.items():
        if kind == "forward":
            ops[name][0], ops[name][2] = s, calls
        elif kind == "backward":
            ops[name][1] = s
    rows = sorted(ops.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    lines = [f"tinyconv: {per_step * 1e3:.1f} ms a step", "",
             "| op | calls/step | forward ms | backward ms | share of the step |", "|---|---|---|---|---|"]
    shown = 0.0
    for name, (f, b, calls) in rows[:top]:
        lines.append(f"| {name} | {calls:g} | {f * 1e3:.2f} | {b * 1e3:.2f} | {(f + b) / per_step:.0%} |")
    total_ops = sum(f + b for f, b, _ in ops.values())
    rest = sum(f + b for _, (f, b, _) in rows[top:])
    if rest:
        lines.append(f"| (other ops) | | | | {rest / per_step:.0%} |")
    for (kind, name), (calls, s) in totals.items():
        if kind == "optimizer":
            lines.append(f"| {name}.step (optimizer) | {calls:g} | | | {s / per_step:.0%} |")
            total_ops += s
    lines.append(f"| engine and Python between ops | | | | {max(per_step - total_ops, 0) / per_step:.0%} |")
    kernels = sorted(((n, c, s) for (k, n), (c, s) in totals.items() if k == "kernel"), key=lambda r: -r[2])
    if kernels:
        lines += ["", "| kernel (inside the ops above) | calls/step | ms/step | share of the step |",
                  "|---|---|---|---|"]
        lines += [f"| {n} | {c:g} | {s * 1e3:.2f} | {s / per_step:.0%} |" for n, c, s in kernels]
    return lines


# -- PyTorch: its profiler ------------------------------------------------------------------------------
def torch_table(step, steps, top=10):
    torch = workloads.torch
    step()
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        per_step = (time.perf_counter() - t0) / steps
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    lines = [f"PyTorch {torch.__version__}: {per_step * 1e3:.1f} ms a step (under its profiler)", "",
             "| operator | calls/step | self ms/step | share of the step |", "|---|---|---|---|"]
    for e in events[:top]:
        ms = e.self_cpu_time_total / 1e3 / steps
        lines.append(f"| {e.key} | {e.count / steps:g} | {ms:.2f} | {ms / 1e3 / per_step:.0%} |")
    return lines


# -- what to profile ----------------------------------------------------------------------------------
MODEL_INPUTS = {"lenet5": (1, 32)}  # channels, size; everything else 3 x --size


def build(target, batch=None, size=None, scale="full", inference=False):
    """``(label, {'tinyconv': step, 'torch': step})`` for a zoo model's training step or a conv case.

    With ``inference``, a zoo model's forward pass in evaluation mode without gradients (1000 classes), at
    batch 1 and 224x224 unless given: the suite's inference rows.
    """
    impls = ["tinyconv"] + (["torch"] if workloads.torch is not None else [])
    if target.startswith("conv:"):
        name = target[5:]
        case = next((c for c in workloads.conv_cases(scale) if c.name == name), None)
        if case is None:
            raise SystemExit(f"no conv case {name!r}; the cases: "
                             + ", ".join(c.name for c in workloads.conv_cases(scale)))
        return f"conv fwd+bwd {case.name} ({case.describe()})", case.build(impls)
    channels, default_size = MODEL_INPUTS.get(target, (3, 64))
    if inference:
        batch, size = batch or 1, size or (default_size if target in MODEL_INPUTS else 224)
        steps = {impl: workloads.inference_step(impl, target, batch, size, channels)[0] for impl in impls}
        return f"{target} inference (batch {batch}, {channels}x{size}x{size}, eval, no gradients)", steps
    size = size or default_size
    batch = batch or 16
    steps = {impl: workloads.training_step(impl, target, batch, size, channels)[0] for impl in impls}
    return f"{target} training step (batch {batch}, {channels}x{size}x{size})", steps


# the rows of RESULTS.md that missed their target in the last full run, as (target, batch, size)
ROWS = [("lenet5", 64, None), ("conv:ResNet 3x3", None, None), ("resnet18", 16, 64), ("mobilenet_v2", 16, 64),
        ("efficientnet_b0", 16, 64), ("densenet121", 16, 64), ("googlenet_torchvision", 16, 64),
        ("convnext_tiny", 16, 64)]


def profile_row(target, batch=None, size=None, steps=5, scale="full", with_torch=True, inference=False):
    label, fns = build(target, batch, size, scale, inference)
    per_step, totals = profile_tinyconv(fns["tinyconv"], steps)
    lines = [f"### {label}", ""] + tinyconv_table(per_step, totals)
    if with_torch and "torch" in fns:
        lines += [""] + torch_table(fns["torch"], steps)
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target", nargs="*", help="a zoo model name, or: conv \"<case name>\"")
    p.add_argument("--batch", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--steps", type=int, default=5, help="profiled steps after one warm-up (default 5)")
    p.add_argument("--rows", action="store_true", help="every row of ROWS (the targets RESULTS.md misses)")
    p.add_argument("--quick", action="store_true", help="the quick conv sizes, 2 steps")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--inference", action="store_true",
                   help="a zoo model's forward pass in eval mode without gradients (default batch 1, 224x224)")
    p.add_argument("--output", help="also write the profiles to this markdown file")
    args = p.parse_args(argv)
    scale, steps = ("quick", 2) if args.quick else ("full", args.steps)
    if args.inference and (args.rows or args.target[:1] == ["conv"]):
        p.error("--inference takes one zoo model")
    if args.rows:
        targets = ROWS
    elif args.target[:1] == ["conv"]:
        targets = [("conv:" + " ".join(args.target[1:]), None, None)]
    elif len(args.target) == 1:
        targets = [(args.target[0], args.batch, args.size)]
    else:
        p.error("name one zoo model, or: conv \"<case name>\", or --rows")
    from .machine import describe
    lines = ["# Where the time goes: per-op profiles", "",
             f"Written by `python -m benchmarks.profile {' '.join(argv if argv is not None else sys.argv[1:])}`"
             f" ({steps} profiled steps after a warm-up).", ""]
    lines += [f"- {k}: {v}" for k, v in describe(workloads.torch)] + [""]
    for line in lines:
        print(line, flush=True)
    for target, batch, size in targets:
        block = profile_row(target, batch, size, steps, scale, with_torch=not args.no_torch,
                            inference=args.inference) + [""]
        for line in block:
            print(line, flush=True)
        lines += block
    if args.output:
        tmp = args.output + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(lines).rstrip("\n") + "\n")
        os.replace(tmp, args.output)


if __name__ == "__main__":
    sys.exit(main())
