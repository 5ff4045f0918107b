"""What the numbers were measured on: CPU, cores, load, BLAS and its threads, Numba's and PyTorch's threads."""
import datetime
import os
import platform

import numpy as np


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average():
    try:
        return "%.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        return "n/a"


def blas_pools():
    """threadpoolctl's view of the native thread pools loaded in this process (BLAS, OpenMP)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed"]
    out = []
    for info in threadpool_info():
        lib = os.path.basename(info.get("filepath", "?"))
        extra = ", ".join(f"{k}={info[k]}" for k in ("version", "threading_layer", "architecture") if info.get(k))
        out.append(f"{info['user_api']}: {info['internal_api']} `{lib}` ({extra}), {info['num_threads']} threads")
    return out


def numba_threads():
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = f"not started (configured: {numba.config.THREADING_LAYER})"
    return f"numba {numba.__version__}, threading layer {layer}, {numba.get_num_threads()} threads"


def tinyconv_threads():
    import tinyconv
    policy = getattr(tinyconv.threads, "thread_policy", None)
    return policy() if policy else "not managed by tinyconv"


def describe(torch=None):
    """A list of ``(label, value)`` lines for RESULTS.md."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", f"{cpu_model()}, {os.cpu_count()} logical cores ({affinity} usable)"),
        ("load average (1, 5, 15 min)", load_average()),
        ("Python / NumPy", f"{platform.python_version()} / {np.__version__}"),
    ]
    lines += [("thread pool", p) for p in blas_pools()]
    lines.append(("Numba", numba_threads()))
    lines.append(("tinyconv threads", tinyconv_threads()))
    if torch is not None:
        lines.append(("PyTorch", f"{torch.__version__}, {torch.get_num_threads()} intra-op threads, "
                                 f"{torch.get_num_interop_threads()} inter-op"))
        try:
            import torchvision
            lines.append(("torchvision", f"{torchvision.__version__} (PyTorch's models of the zoo, inference rows; "
                                         "its MNIST pipeline in the epoch row)"))
        except ImportError:
            lines.append(("torchvision", "not installed: the rows that need it are PyTorch-less"))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_WAIT_POLICY",
                "NUMBA_THREADING_LAYER", "TINYCONV_KERNELS", "TINYCONV_THREADS"):
        if var in os.environ:
            lines.append((var, os.environ[var]))
    return lines
