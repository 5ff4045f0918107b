"""Data-parallel training measured here, and a ring all-reduce cost model for clusters.

    python -m benchmarks.distributed                  # scaling: 1 rank x 2 threads, 1 x 1, 2 ranks x 1 thread
    python -m benchmarks.distributed --equivalence    # 2 ranks vs 1 process: weight differences after N steps
    python -m benchmarks.distributed --cost-model     # the cluster table (no measurement)

The driver starts its workers with ``mpiexec -n P`` (``--worker``).  A worker times training steps of
LeNet-5 (32x32, global batch 64) and resnet18 (3x112x112, global batch 8) under ``DistributedDataParallel``,
the time a step spends blocked in the gradient all-reduce, and a sweep of packed float32 all-reduces of
1 KB .. 64 MB, to which the driver fits ``t = a + b * 2(p-1)/p * bytes`` (the ring model's latency and
inverse bandwidth).  Figures on a shared machine are noisy: medians over rounds, nothing more.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = {"lenet5": ((1, 32, 32), 64), "resnet18": ((3, 112, 112), 8)}

# -- the cost model ---------------------------------------------------------------------------------------
# Per-GPU compute time of one training step (forward + backward + update) at batch 256 per GPU, from NVIDIA's
# published single-A100 training throughput with mixed precision (DeepLearningExamples: ResNet-50 v1.5 about
# 2,700 images/s; EfficientNet-B0 about 3,900 images/s).  Assumptions, not measurements of tinyconv.
GPU_IMAGES_PER_S = {"resnet50": 2700.0, "efficientnet_b0": 3900.0}
PER_GPU_BATCH = 256
LINK_LATENCY_S = 5e-6     # one ring step's latency on InfiniBand / RoCE (a few microseconds)
BUCKET_BYTES = 25 * 2**20  # PyTorch's default bucket: each bucket pays the latency term once
BACKWARD_SHARE = 2 / 3     # backward ~ 2x forward: the part of a step that the all-reduce can hide behind


def ring_allreduce_s(nbytes, p, bandwidth_bytes_s, latency_s, buckets=1):
    """Ring all-reduce: reduce-scatter then all-gather, 2(p-1) steps of nbytes/p each:
    ``2 (p-1)/p * nbytes / bandwidth + 2 (p-1) * latency`` per bucket's latency."""
    if p == 1:
        return 0.0
    return 2 * (p - 1) / p * nbytes / bandwidth_bytes_s + 2 * (p - 1) * latency_s * buckets


def cost_table(params):
    """Rows (model, link Gb/s, GPUs, compute ms, all-reduce ms, step ms no overlap / overlapped, efficiency)."""
    rows = []
    for model, n in params.items():
        nbytes = 4 * n  # float32 gradients
        compute = PER_GPU_BATCH / GPU_IMAGES_PER_S[model]
        buckets = max(1, -(-nbytes // BUCKET_BYTES))
        for gbit in (100, 400):
            for p in (8, 64, 512):
                comm = ring_allreduce_s(nbytes, p, gbit * 1e9 / 8, LINK_LATENCY_S, buckets)
                serial = compute + comm
                overlapped = compute + max(0.0, comm - BACKWARD_SHARE * compute)  # buckets during backward
                rows.append((model, n, gbit, p, compute * 1e3, comm * 1e3, serial * 1e3, overlapped * 1e3,
                             compute / serial, compute / overlapped))
    return rows


def print_cost_table():
    import tinyconv.models as zoo
    params = {name: sum(q.numel() for q in getattr(zoo, name)().parameters()) for name in GPU_IMAGES_PER_S}
    print("| model | params | link | GPUs | compute ms | all-reduce ms | step ms (serial / overlapped) | "
          "efficiency (serial / overlapped) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for model, n, gbit, p, comp, comm, serial, over, e1, e2 in cost_table(params):
        print(f"| {model} | {n / 1e6:.1f}M | {gbit} Gb/s | {p} | {comp:.0f} | {comm:.1f} | {serial:.0f} / {over:.0f} "
              f"| {100 * e1:.0f}% / {100 * e2:.0f}% |")


# -- the workers (under mpiexec) ------------------------------------------------------------------------------
def _time_steps(dist, name, threads, steps):
    import tinyconv as tc
    from tinyconv import functional as F
    from tinyconv import models, optim
    from tinyconv.distributed import comm
    shape, batch = WORKLOADS[name]
    p, r = dist.get_world_size(), dist.get_rank()
    tc.manual_seed(0)
    model = getattr(models, name)(num_classes=10, in_channels=shape[0]) if name == "resnet18" else models.lenet5()
    ddp = dist.DistributedDataParallel(model)
    opt = optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(r)
    x = tc.tensor(rng.standard_normal((batch // p,) + shape).astype(np.float32))
    y = tc.tensor(rng.integers(0, 10, batch // p))
    blocked = [0.0]
    group = comm.backend_for(x.data)
    for meth in ("allreduce",):
        f = getattr(group, meth)
        setattr(group, meth, lambda *a, f=f: _timed_call(blocked, f, *a))
    finish = ddp._finish
    ddp._finish = lambda: _timed_call(blocked, finish)  # waits for started buckets, reduces the rest

    def step():
        opt.zero_grad()
        F.cross_entropy(ddp(x), y).backward()
        opt.step()

    step(), step()  # compile and warm up
    times, shares = [], []
    for _ in range(steps):
        dist.barrier()
        blocked[0] = 0.0
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        shares.append(blocked[0] / times[-1])
    grad_bytes = 4 * sum(q.numel() for q in ddp.parameters())
    buf = np.zeros(grad_bytes // 4, np.float32)
    dist.barrier()
    t_ar = []
    for _ in range(5):
        t0 = time.perf_counter()
        group.allreduce(buf) if p > 1 else None
        t_ar.append(time.perf_counter() - t0)
    return {"model": name, "ranks": p, "threads": threads, "step_s": statistics.median(times),
            "images_per_s": batch / statistics.median(times), "allreduce_share": statistics.median(shares),
            "grad_bytes": grad_bytes, "standalone_allreduce_s": statistics.median(t_ar)}


def _timed_call(acc, f, *a):
    t0 = time.perf_counter()
    out = f(*a)
    acc[0] += time.perf_counter() - t0
    return out


def _sweep(dist):
    from tinyconv.distributed import comm
    group = comm.backend_for(np.zeros(1, np.float32))
    out = []
    for k in range(10, 27, 2):
        buf = np.zeros(2**k // 4, np.float32)
        reps = max(3, min(200, 2**24 // 2**k))
        ts = []
        for _ in range(5):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                group.allreduce(buf)
            ts.append((time.perf_counter() - t0) / reps)
        out.append((2**k, statistics.median(ts)))
    return out


def _equivalence(dist, steps, dtype):
    """Weight differences after ``steps`` SGD steps, P ranks (B/P each) vs one process (B): the largest
    ``|dw|`` and the largest per-tensor ``||dw|| / ||w||``, in ``dtype`` (float64 shows the float32 gap is
    round-off: it shrinks by ~1e9)."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "distributed"))
    from models import global_batch, make, shard, weights
    from tinyconv import functional as F
    from tinyconv import optim
    p, r = dist.get_world_size(), dist.get_rank()

    def train(model, rank, world):
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for s in range(steps):
            x, y = global_batch(16, s)
            x = x.to(np.dtype(dtype))
            opt.zero_grad()
            F.cross_entropy(model(shard(x, rank, world)), shard(y, rank, world)).backward()
            opt.step()
        return weights(model)

    out = []
    for name, sync in (("lenet5", False), ("resnet", True), ("resnet", False)):
        model = make(name).to(dtype=np.dtype(dtype))
        if sync:
            model = dist.convert_sync_batchnorm(model)
        a = train(dist.DistributedDataParallel(model), r, p)
        b = train(make(name).to(dtype=np.dtype(dtype)), 0, 1)
        params = [k for k in a if "running" not in k and "num_batches" not in k]
        abs_d = max(float(np.abs(a[k] - b[k]).max()) for k in params)
        rel_d = max(float(np.linalg.norm(a[k] - b[k]) / np.linalg.norm(b[k])) for k in params)
        out.append({"model": name, "sync_bn": sync, "steps": steps, "dtype": dtype, "max_abs": abs_d,
                    "max_rel": rel_d})
    return out


def worker(args):
    import tinyconv as tc
    import tinyconv.distributed as dist
    dist.init()
    tc.set_num_threads(args.threads)
    if args.equivalence:
        result = _equivalence(dist, args.steps, args.dtype)
    else:
        result = {"steps": [_time_steps(dist, name, args.threads, args.steps) for name in WORKLOADS]}
        if dist.get_world_size() > 1:
            result["sweep"] = _sweep(dist)
    if dist.get_rank() == 0:
        print("RESULT " + json.dumps(result))


def _launch(ranks, threads, extra=()):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, ".dev"), os.environ.get("PYTHONPATH", "")]))
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "benchmarks.distributed", "--worker",
           "--threads", str(threads), *extra]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])


def fit_latency_bandwidth(sweep, p=2):
    """Least squares ``t = a + b * 2(p-1)/p * bytes``: a (s) and the effective bandwidth 1/b (bytes/s)."""
    x = np.array([2 * (p - 1) / p * n for n, _ in sweep])
    t = np.array([s for _, s in sweep])
    b, a = np.polyfit(x, t, 1, w=1 / t)  # relative errors: small messages count as much as large ones
    return a, 1 / b


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model (equivalence: SGD steps)")
    ap.add_argument("--equivalence", action="store_true", help="2 ranks vs 1 process, weight differences")
    ap.add_argument("--dtype", default="float32", help="equivalence: float32 or float64")
    ap.add_argument("--cost-model", action="store_true", help="print the cluster prediction table only")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.cost_model:
        return print_cost_table()
    if args.equivalence:
        for row in _launch(2, 1, ["--equivalence", "--steps", str(args.steps), "--dtype", args.dtype]):
            print(f"{row['model']:7s} sync_bn={row['sync_bn']!s:5s} {row['dtype']} after {row['steps']} steps: "
                  f"max |dw| {row['max_abs']:.1e}, max ||dw||/||w|| {row['max_rel']:.1e}")
        return
    one = _launch(1, 2, ["--steps", str(args.steps)])
    single = _launch(1, 1, ["--steps", str(args.steps)])
    two = _launch(2, 1, ["--steps", str(args.steps)])
    print(json.dumps({"1x2": one, "1x1": single, "2x1": two}))
    print("| model | 1 rank x 2 threads img/s | 1 rank x 1 thread img/s | 2 ranks x 1 thread img/s | all-reduce "
          "share of a 2-rank step | gradient all-reduce alone: measured / model ms |")
    print("|---|---:|---:|---:|---:|---:|")
    a, bw = fit_latency_bandwidth(two["sweep"])
    for s1, s11, s2 in zip(one["steps"], single["steps"], two["steps"]):
        model = 1e3 * ring_allreduce_s(s2["grad_bytes"], 2, bw, a / 2)
        print(f"| {s1['model']} | {s1['images_per_s']:.1f} | {s11['images_per_s']:.1f} | {s2['images_per_s']:.1f} | "
              f"{100 * s2['allreduce_share']:.0f}% | {1e3 * s2['standalone_allreduce_s']:.2f} / {model:.2f} |")
    print(f"fit over 1 KB..64 MB (2 ranks): latency a = {a * 1e6:.1f} us per all-reduce, "
          f"bandwidth {bw / 1e9:.2f} GB/s")
    for n, t in two["sweep"]:
        print(f"  {n:>10d} B  measured {t * 1e3:8.3f} ms  model {1e3 * ring_allreduce_s(n, 2, bw, a / 2):8.3f} ms")


if __name__ == "__main__":
    main()
