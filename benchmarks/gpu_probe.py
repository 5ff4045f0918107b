"""Measurements for the GPU session (``benchmarks/gpu_session.sh``) that the benchmark rows do not take: TF32's
accuracy and speed in tinyconv's matrix products, the host's cost of one kernel launch, and whether a whole
training step can be captured as a CUDA graph.

    python -m benchmarks.gpu_probe                       # TF32 and launch overhead, markdown on stdout
    python -m benchmarks.gpu_probe --graph               # also try to capture a LeNet step as a CUDA graph
    python -m benchmarks.gpu_probe --device cpu --tiny   # a dry run of the same code on the CPU

TF32 rows: the normwise relative error ``||Y - Y64|| / ||Y64||`` of a float32 product against the same product in
float64 (on the device), with TF32 off (the default) and on (``tinyconv.cuda.allow_tf32``), for a 2-D product
(``linear``: CuPy's compute type decides) and a convolution (batched products: the cuBLAS math mode decides),
and PyTorch's own TF32 matmul for comparison.  Expected: about 3e-7 off, about 3e-4 on (``docs/gpu.md``).
"""
import argparse
import statistics
import sys
import time

import numpy as np

import tinyconv
import tinyconv.functional as F
from tinyconv import backend

from .gpu import train_step
from .workloads import torch


def _sync(device):
    if device == "cuda":
        tinyconv.cuda.synchronize()


def _median_ms(fn, device, reps=5):
    fn()
    _sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _host(t):
    return backend.to_numpy(t.data).astype(np.float64)


def _error(y, exact):
    return float(np.linalg.norm(_host(y) - exact) / np.linalg.norm(exact))


def tf32_rows(device, tiny):
    """Markdown rows: error and time of linear and conv2d with TF32 off and on; PyTorch's TF32 matmul error."""
    rng = np.random.default_rng(0)
    n = 64 if tiny else 4096
    x, w = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    img = rng.standard_normal((2, 8, 8, 8) if tiny else (32, 128, 56, 56), dtype=np.float32)
    k = rng.standard_normal((8, 8, 3, 3) if tiny else (128, 128, 3, 3), dtype=np.float32) * 0.1
    cases = {
        f"linear {n}x{n} @ {n}x{n} (2-D product)": (lambda a, b: F.linear(a, b), x, w),
        f"conv2d 3x3 {img.shape} * {k.shape} (batched products)": (lambda a, b: F.conv2d(a, b, padding=1), img, k),
    }
    lines = ["| product | TF32 | relative error vs float64 | ms (median of 5) |", "|---|---|---|---|"]
    for label, (op, a, b) in cases.items():
        a64, b64 = (tinyconv.tensor(v.astype(np.float64), device=device) for v in (a, b))
        exact = _host(op(a64, b64))
        ta, tb = tinyconv.tensor(a, device=device), tinyconv.tensor(b, device=device)
        for allowed in (False, True):
            with tinyconv.cuda.allow_tf32(allowed):
                err = _error(op(ta, tb), exact)
                ms = _median_ms(lambda: op(ta, tb), device)
            lines.append(f"| {label} | {'on' if allowed else 'off'} | {err:.2e} | {ms:.3f} |")
    if torch is not None and device == "cuda" and torch.cuda.is_available():
        exact = x.astype(np.float64) @ w.astype(np.float64).T
        tx, tw = torch.tensor(x, device="cuda"), torch.tensor(w, device="cuda")
        old = torch.backends.cuda.matmul.allow_tf32
        for allowed in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = allowed
            y = (tx @ tw.T).double().cpu().numpy()
            lines.append(f"| PyTorch matmul {n}x{n} (reference) | {'on' if allowed else 'off'} | "
                         f"{np.linalg.norm(y - exact) / np.linalg.norm(exact):.2e} | |")
        torch.backends.cuda.matmul.allow_tf32 = old
    return lines


def launch_rows(device, calls):
    """Markdown rows: the host's microseconds per call of small operations (queued without waiting; one sync at
    the end): a ``numba.cuda`` kernel through tinyconv's bridge, a CuPy elementwise kernel, and tinyconv ops."""
    xp = backend.xp_for(device)
    x = xp.asarray(np.ones((1, 1, 4, 4), np.float32))
    im2col = backend.get_kernel("im2col", x)
    t = tinyconv.tensor(np.ones((4, 4), np.float32), device=device, requires_grad=True)
    cases = {
        "im2col, numba.cuda kernel through the bridge (1x1x4x4, 3x3)": lambda: im2col(x, 3, 3, 1, 1, 1, 1, 1, 1, 4, 4),
        "x + 1, one CuPy elementwise kernel": lambda: x + 1,
        "tinyconv F.relu (forward, recording the graph)": lambda: F.relu(t),
        "tinyconv (t * 2).sum().backward()": lambda: (t * 2).sum().backward(),
    }
    lines = ["| operation | host us per call |", "|---|---|"]
    for label, fn in cases.items():
        fn()
        _sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        host = time.perf_counter() - start
        _sync(device)
        lines.append(f"| {label} | {1e6 * host / calls:.1f} |")
    return lines


def graph_rows(device, tiny):
    """Try to capture one LeNet training step as a CUDA graph with CuPy's stream capture, and replay it.

    Expected to fail as the code stands (``docs/gpu.md``, "CUDA graphs"): the ``numba.cuda`` kernels launch on the
    legacy default stream, which a capture on another stream refuses, and the bridge waits for the capturing
    stream, which a capture forbids.  The row records how it fails, or the speed-up if it works."""
    batch = 4 if tiny else 64
    step = train_step("lenet5", batch, 32, 1, device, "tinyconv")
    eager = _median_ms(step, device)
    lines = ["| LeNet-5 step, batch %d | ms |" % batch, "|---|---|", f"| eager | {eager:.3f} |"]
    cp = backend.cupy_or_none() if device == "cuda" else None
    if cp is None or not hasattr(getattr(cp.cuda, "Stream", None), "begin_capture"):
        return lines + ["| graph | not tried: needs CuPy's Stream.begin_capture on a GPU |"]
    stream = cp.cuda.Stream(non_blocking=True)
    try:
        with stream:
            stream.begin_capture()
            try:
                step()
            finally:
                graph = stream.end_capture()
        graph.launch(stream)
        stream.synchronize()
        replay = _median_ms(lambda: graph.launch(stream), device)
        lines.append(f"| graph replay | {replay:.3f} ({eager / replay:.2f}x) |")
    except Exception as e:  # the probe reports how capture fails; it changes nothing
        lines.append(f"| graph | capture failed: {type(e).__name__}: {str(e).splitlines()[0][:200]} |")
    return lines


def main(argv=None, out=sys.stdout):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--tiny", action="store_true", help="small sizes (dry runs)")
    p.add_argument("--graph", action="store_true", help="also try to capture a LeNet step as a CUDA graph")
    args = p.parse_args(argv)
    if args.device == "cuda" and not tinyconv.cuda.is_available():
        print("benchmarks.gpu_probe: CUDA is not available", file=sys.stderr)
        return 2
    sections = [("TF32 in tinyconv's matrix products", tf32_rows(args.device, args.tiny)),
                ("Host cost per launch", launch_rows(args.device, 20 if args.tiny else 2000))]
    if args.graph:
        sections.append(("CUDA graph of a LeNet training step", graph_rows(args.device, args.tiny)))
    for title, lines in sections:
        print(f"## {title} ({args.device})\n", file=out)
        print("\n".join(lines) + "\n", file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
