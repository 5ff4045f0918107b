"""Peak memory of one training step, each measured in a fresh process.

Method: in a new Python process, import the framework, build the model, optimiser and batch, and run two
training steps (the first compiles or loads the Numba kernels and creates the momentum buffers).  Then reset
the kernel's resident-set high-water mark (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0), read the
current RSS as the baseline, run one more step and read the high-water mark (``VmHWM``).  The reported peak
is ``VmHWM - baseline``: what one step adds on top of the model, its gradients-to-be and optimiser state
(activations, saved buffers, the gradients themselves, temporaries).  Where ``clear_refs`` is not writable
the high-water mark cannot be reset and ``ru_maxrss`` minus the baseline is used instead (an overestimate
when the set-up peaked higher than the step).

Run by ``run.py`` as ``python -m benchmarks.memory IMPL MODEL BATCH SIZE``; prints one JSON line.
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


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_step(impl, model, batch, size):
    """Run in the child: the peak RSS increase (MiB) of one training step."""
    from .workloads import training_step
    channels = 1 if model == "lenet5" else 3
    step, _ = training_step(impl, model, batch, size, channels)
    step()
    step()
    reset = _reset_peak()
    base = _status_kib("VmRSS")
    step()
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"impl": impl, "model": model, "batch": batch, "baseline_mib": base / 1024,
            "peak_mib": (peak - base) / 1024, "method": "VmHWM reset" if reset else "ru_maxrss"}


def run_child(impl, model, batch, size, timeout=900):
    """Measure in a fresh interpreter; returns the child's dict, or ``{"error": ...}``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [sys.executable, "-m", "benchmarks.memory", impl, model, str(batch), str(size)]
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    impl, model, batch, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(measure_step(impl, model, batch, size)))
