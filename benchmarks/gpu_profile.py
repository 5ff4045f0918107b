"""Profile workloads for the GPU session (``benchmarks/gpu_session.sh``): a slice of a LeNet-5 epoch and a
resnet18 training step, each timed step inside an NVTX range ``tinyconv_step`` (for ``nsys`` and ``ncu``).

    python -m benchmarks.gpu_profile --workload lenet --steps 30                      # just run (under nsys/ncu)
    python -m benchmarks.gpu_profile --workload lenet --trace out/lenet --cprofile out/lenet_host.txt
    python -m benchmarks.gpu_profile --workload resnet18 --device cpu --tiny          # a dry run on the CPU

``--trace PREFIX`` runs the timed steps under ``torch.profiler`` (CUPTI sees every kernel of the process, CuPy's,
cuBLAS's and Numba's alike) and writes ``PREFIX.json`` (the Chrome trace) and ``PREFIX.md``: the kernels by total
GPU time, the GPU's busy fraction of the wall time (a launch-bound step leaves the GPU idle between small
kernels) and the launches per step.  ``--cprofile FILE`` writes the host's Python profile of the timed steps
(where tinyconv's own per-op Python goes).  ``--ncu-regex`` prints an ``ncu --kernel-name`` expression for the
top kernels of a trace (``--from-trace PREFIX.json``) and exits.
"""
import argparse
import contextlib
import cProfile
import io
import json
import pstats
import re
import sys
import time

import tinyconv

from .gpu import train_step

WORKLOADS = {  # name -> (model, batch, image size, channels); --tiny shrinks them for dry runs
    "lenet": ("lenet5", 64, 32, 1),
    "resnet18": ("resnet18", 64, 224, 3),
}
TINY = {"lenet": (4, 32), "resnet18": (2, 32)}  # batch, image size


@contextlib.contextmanager
def nvtx_range(name, enabled):
    """An NVTX push/pop range around the block (CuPy's NVTX bindings) when ``enabled`` and a GPU is present."""
    nvtx = None
    if enabled and tinyconv.cuda.is_available():
        try:
            from cupy.cuda import nvtx
        except ImportError:
            nvtx = None
    if nvtx is not None:
        nvtx.RangePush(name)
    try:
        yield
    finally:
        if nvtx is not None:
            nvtx.RangePop()


def kernel_summary(trace, step_seconds, steps):
    """Markdown lines from a Chrome trace (``torch.profiler``'s JSON, already loaded): the GPU kernels by total
    time, the copies and fills, the GPU's busy time against the steps' wall time, and the launches per step."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    gpu = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    launches = [e for e in events if e.get("cat") in ("cuda_runtime", "cuda_driver")
                and "launch" in e.get("name", "").lower()]
    totals = {}
    for e in gpu:
        t = totals.setdefault((e["cat"], e["name"]), [0.0, 0])
        t[0] += float(e.get("dur", 0.0))
        t[1] += 1
    busy = _union_length(sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0.0))) for e in gpu))
    wall = step_seconds * steps * 1e6
    lines = [f"- {steps} timed steps, {step_seconds * 1e3:.3f} ms a step (wall, each ending in a device sync)",
             f"- GPU busy (union of kernels, copies, fills): {busy / 1e3:.3f} ms of {wall / 1e3:.3f} ms wall "
             f"= {100 * busy / wall if wall else 0:.1f}%",
             f"- GPU operations: {len(gpu)} ({len(gpu) / max(steps, 1):.1f} a step); launch API calls seen: "
             f"{len(launches)} ({len(launches) / max(steps, 1):.1f} a step)", "",
             "| kind | kernel | calls | total ms | mean us | share of GPU time |", "|---|---|---|---|---|---|"]
    total_gpu = sum(t[0] for t in totals.values()) or 1.0
    for (cat, name), (dur, count) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:25]:
        short = name if len(name) <= 110 else name[:107] + "..."
        lines.append(f"| {cat} | `{short.replace('|', '/')}` | {count} | {dur / 1e3:.3f} | {dur / count:.1f} | "
                     f"{100 * dur / total_gpu:.1f}% |")
    return lines


def _union_length(intervals):
    total, end = 0.0, float("-inf")
    for lo, hi in intervals:
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


def top_kernel_regex(trace, top=4):
    """An ``ncu --kernel-name regex:...`` expression matching the ``top`` kernels by total time: the identifier
    of each kernel's own name (the last ``::`` part before its template or argument list)."""
    totals = {}
    for e in trace.get("traceEvents", []):
        if e.get("ph") == "X" and e.get("cat") == "kernel":
            totals[e["name"]] = totals.get(e["name"], 0.0) + float(e.get("dur", 0.0))
    idents = []
    for name in sorted(totals, key=lambda n: -totals[n]):
        ident = kernel_identifier(name)
        if ident and ident not in idents:
            idents.append(ident)
        if len(idents) == top:
            break
    return "regex:" + "|".join(re.escape(i) for i in idents) if idents else "regex:."


def kernel_identifier(name):
    """A kernel's own name, found in its demangled and its mangled form alike: ``_im2col_kernel32`` for Numba's
    ``cudapy::tinyconv_kernels::im2col::_im2col_kernel32[abi:...](Array<...>)`` and for its mangled
    ``_ZN6cudapy16tinyconv_kernels6im2col16_im2col_kernel32B2v1...``; ``Kernel2`` for ``void cutlass::Kernel2<...>``."""
    if name.startswith("_ZN"):  # Itanium nested name: <length><identifier> ... ; keep the last identifier
        rest, parts = name[3:], []
        while (m := re.match(r"\d+", rest)):
            n = int(m.group())
            parts.append(rest[m.end():m.end() + n])
            rest = rest[m.end() + n:]
        return parts[-1] if parts else name
    head = re.split(r"[(<\[]", name.replace("void ", "", 1), maxsplit=1)[0].strip()
    return head.split("::")[-1].strip()


def run_steps(step, steps, device, nvtx):
    """``steps`` calls of ``step``, each in an NVTX range and ended by a device sync; seconds a step."""
    start = time.perf_counter()
    for _ in range(steps):
        with nvtx_range("tinyconv_step", nvtx):
            step()
            if device == "cuda":
                tinyconv.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main(argv=None, out=sys.stdout):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="lenet")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--steps", type=int, default=20, help="timed steps (after --warmup untimed ones)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="tiny batch and images (dry runs)")
    p.add_argument("--nvtx", action="store_true", help="mark each timed step with an NVTX range 'tinyconv_step'")
    p.add_argument("--trace", metavar="PREFIX", help="torch.profiler: write PREFIX.json and PREFIX.md")
    p.add_argument("--cprofile", metavar="FILE", help="the host's Python profile of the timed steps")
    p.add_argument("--ncu-regex", action="store_true", help="print the top kernels' ncu regex (--from-trace)")
    p.add_argument("--from-trace", metavar="JSON")
    p.add_argument("--top", type=int, default=4)
    args = p.parse_args(argv)
    if args.ncu_regex:
        with open(args.from_trace) as f:
            print(top_kernel_regex(json.load(f), args.top), file=out)
        return 0
    if args.device == "cuda" and not tinyconv.cuda.is_available():
        print("benchmarks.gpu_profile: CUDA is not available", file=sys.stderr)
        return 2
    model, batch, size, channels = WORKLOADS[args.workload]
    if args.tiny:
        batch, size = TINY[args.workload]
    step = train_step(model, batch, size, channels, args.device, "tinyconv")
    run_steps(step, args.warmup, args.device, nvtx=False)  # compiles the kernels, fills the memory pool
    header = f"## {args.workload}: {model} training step, batch {batch}, {size}x{size}, device {args.device}"
    if args.trace:
        seconds = _traced(step, args, header, out)
    elif args.cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        seconds = run_steps(step, args.steps, args.device, args.nvtx)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        with open(args.cprofile, "w") as f:
            f.write(f"{header}: host Python profile of {args.steps} steps, {seconds * 1e3:.3f} ms a step\n")
            f.write(text.getvalue())
    else:
        seconds = run_steps(step, args.steps, args.device, args.nvtx)
    print(f"{header}: {seconds * 1e3:.3f} ms a step over {args.steps} steps", file=out)
    return 0


def _traced(step, args, header, out):
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with profile(activities=activities) as prof:
        seconds = run_steps(step, args.steps, args.device, args.nvtx)
    prof.export_chrome_trace(args.trace + ".json")
    with open(args.trace + ".json") as f:
        trace = json.load(f)
    with open(args.trace + ".md", "w") as f:
        f.write("\n".join([header + " (torch.profiler, CUPTI)", ""] + kernel_summary(trace, seconds, args.steps))
                + "\n")
    return seconds


if __name__ == "__main__":
    sys.exit(main())
