"""Peak memory of one training step, each measured in a fresh process.

Method: in a new Python process, import the framework and warm it up on the same architecture at a tiny size
(batch 2, 32x32: Numba compiles or loads its kernels, PyTorch starts its pools), then free that model.  Build
the measured model, its optimiser (SGD, momentum 0.9) and batch; return the memory malloc keeps for reuse to
the OS (``malloc_trim``, glibc), read the current RSS as the baseline and
reset the kernel's resident-set high-water mark (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0); run one
training step and read the high-water mark (``VmHWM``).  The reported peak is ``VmHWM - baseline``: what the
first training step of a fresh model adds on top of its weights: activations and saved buffers, gradients,
momentum buffers, temporaries.  (Later steps reuse memory the allocator kept, so an RSS difference measured
around them reads about zero.)  Where ``clear_refs`` is not writable the high-water mark cannot be reset and
``ru_maxrss`` minus the baseline is used instead (an overestimate when the warm-up peaked higher).

``KIND`` ``infer`` measures a forward pass in evaluation mode without gradients instead (1000 classes, the
latency rows' setting; the warm-up is an inference too): activations that are freed as the pass goes on.

Run by ``run.py`` as ``python -m benchmarks.memory IMPL MODEL BATCH SIZE [KIND]``; prints one JSON line.
"""
import json
import os
import resource
import subprocess
import sys


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _trim_heap():
    """Give the memory malloc keeps for reuse back to the OS (glibc), so that the baseline counts live data
    only and the step's new arrays show up as new resident pages."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_step(impl, model, batch, size, kind="train"):
    """Run in the child: the peak RSS increase (MiB) of a fresh model's first training step (``kind``
    ``train``) or forward pass in evaluation mode (``infer``)."""
    import gc

    from .workloads import inference_step, training_step
    channels = 1 if model == "lenet5" else 3
    if kind == "infer":
        training_step = inference_step  # noqa: F811  (same signature: impl, name, batch, size, channels)
    warm, _ = training_step(impl, model, 2, 32, channels)
    warm()
    warm()
    del warm
    gc.collect()
    step, _ = training_step(impl, model, batch, size, channels)
    gc.collect()
    _trim_heap()
    base = _status_kib("VmRSS")
    reset = _reset_peak()
    step()
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"impl": impl, "model": model, "batch": batch, "kind": kind, "baseline_mib": base / 1024,
            "peak_mib": (peak - base) / 1024, "method": "VmHWM reset" if reset else "ru_maxrss"}


def run_child(impl, model, batch, size, kind="train", timeout=900):
    """Measure in a fresh interpreter; returns the child's dict, or ``{"error": ...}``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [sys.executable, "-m", "benchmarks.memory", impl, model, str(batch), str(size), kind]
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    impl, model, batch, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(measure_step(impl, model, batch, size, sys.argv[5] if len(sys.argv) > 5 else "train")))
