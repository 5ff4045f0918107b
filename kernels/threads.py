"""CPU threads: who runs tinyconv's work in parallel, and when.

Two native thread pools do the work on the CPU: the BLAS library behind NumPy's ``matmul`` (OpenBLAS, with
its own pthreads) and Numba's parallel kernels (``prange``; Numba's ``omp`` threading layer, i.e. an OpenMP
pool).  Each defaults to one thread per core, and each *spin-waits* for a while after its work, hoping for
more.  Every parallel region is a fork and a join: the caller waits for the slowest thread.  On a machine
with more runnable threads than cores (a busy laptop, a shared server, two pools spinning at once) a thread
may wait a whole scheduler time slice to run again, so a kernel of 50 microseconds can take milliseconds
when it runs on two threads (measured on a loaded 2-core machine: 1.9 ms on 2 threads against 35 us on one,
and a LeNet-5 training step 25x slower with both pools at their defaults than on one thread each).

The policy, applied at the first kernel call:

- **Numba kernels run on the calling thread unless they are huge.**  A Numba kernel whose largest array has
  fewer than ``PARALLEL_MIN_SIZE`` elements (2**24, 64 MiB of float32) runs on one thread.  Small kernels:
  the fork and join would cost more than they save.  Mid-sized ones: most of them (im2col, col2im) run right
  after a BLAS product, whose idle threads spin for about 0.1 s; a parallel kernel then shares a core with a
  spinning thread and waits for it at its join.  Measured on an idle 2-core machine, forward + backward of a
  ResNet 3x3 layer (N=8, 64 channels, 56x56) ran at 54 GFLOP/s with im2col/col2im on two threads and at
  74 GFLOP/s on one (a 1x1 layer: 55 and 75).  A kernel may lower the threshold for itself
  (``parallel_min_size``, see ``sized``): the depthwise and grouped convolution kernels do (2**18), having
  KH*KW (Cg*KH*KW) multiply-adds per element to split and no BLAS product of their own right before them.
  The batch-norm kernels go parallel from 2**22: two threads saved 2-5 ms of a mobilenet_v2 step (64x64,
  batch 16) on an idle machine from 2**16, and cost 10-110 ms with the other core busy.
- **Idle kernel threads sleep** instead of spinning: Numba's OpenMP pool starts with ``OMP_WAIT_POLICY=PASSIVE``
  (only that pool: the variable is restored once it has started; a value the user set is kept), so a
  parallel kernel that has finished leaves both cores to BLAS and to other processes.
- **Small matrix products run on one BLAS thread.**  OpenBLAS parallelises any product above 2**18
  multiply-adds; the convolution and linear layers run theirs under ``gemm(macs)``, which holds BLAS to one
  thread below ``BLAS_PARALLEL_MIN_MACS`` (2**26, about a millisecond on one core) and restores it after.
  (OpenBLAS's idle threads spin for about 0.1 s after a parallel product; ``OPENBLAS_THREAD_TIMEOUT=4`` in
  the environment before NumPy is imported shortens that.)
- **A small convolution splits its images across threads instead.**  Below ``BLAS_PARALLEL_MIN_MACS`` a
  convolution's products run on one BLAS thread, but its batch is already cut into chunks of images
  (``kernels/conv2d.py``): ``split_work`` hands runs of chunks to a few Python threads (a pool of ``max_threads() - 1``
  plus the caller), each doing its chunks' im2col, GEMMs and col2im on one core (the Numba kernels release
  the GIL, NumPy's matmul too).  Every chunk is computed as it would be alone, so results do not depend on
  the thread count.  Measured on an idle 2-core machine: LeNet-5's C1 and C3 forward 1.5-1.6x faster; with
  the other core busy 10-15% slower (threads that block, unlike spinning pools, lose little).
- **One knob for both pools**: ``tinyconv.set_num_threads(n)`` (or ``TINYCONV_THREADS=n``) caps the Numba
  kernels and BLAS at ``n`` threads; ``set_num_threads(1)`` is the right choice when several training
  processes share the machine.

This module belongs to the kernels (``tinyconv_kernels.threads``): the ops above the seam never import it.
``tinyconv.set_num_threads`` and ``tinyconv.threads`` are the user's handles on it, through ``tinyconv.backend``.
"""
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

PARALLEL_MIN_SIZE = 1 << 24
BLAS_PARALLEL_MIN_MACS = 1 << 26

_started = False
_limit = None          # the cap set by set_num_threads / TINYCONV_THREADS (None: every core)
_blas_limiter = None   # threadpoolctl's handle: the BLAS limit holds while it is referenced
_local = threading.local()  # Numba's thread count is per calling thread; remember what we set
_blas = None           # threadpoolctl's controllers of the BLAS libraries loaded (found once)
_pool = None           # split_work's helper threads (max_threads() - 1 of them, made on first use)
_pool_size = 0


def _start():
    """Start Numba's thread pool with passive waiting, then apply ``TINYCONV_THREADS``."""
    global _started
    if _started:
        return
    _started = True
    keep = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
    saved = os.environ.get("OMP_WAIT_POLICY")
    if not keep:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read once, when Numba's OpenMP library initialises
    try:
        numba.get_num_threads()  # launches the pool
    finally:
        if not keep:
            if saved is None:
                os.environ.pop("OMP_WAIT_POLICY", None)
            else:
                os.environ["OMP_WAIT_POLICY"] = saved
    if os.environ.get("TINYCONV_THREADS"):
        set_num_threads(int(os.environ["TINYCONV_THREADS"]))


def _numba_threads(n):
    """Set the calling thread's Numba thread count, skipping the call when it is already ``n``."""
    if getattr(_local, "numba_threads", None) != n:
        numba.set_num_threads(n)
        _local.numba_threads = n


def max_threads():
    """Threads a large kernel may use: the cap of ``set_num_threads``, else Numba's pool size."""
    return min(_limit or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS)


def sized(kernel):
    """Wrap a Numba CPU kernel: on one thread when its largest array is small, else on ``max_threads()``.

    "Small" is below ``PARALLEL_MIN_SIZE`` elements, or below the kernel's own ``parallel_min_size``
    attribute where it sets one (a kernel doing many operations per element, such as depthwise convolution's
    KH*KW multiply-adds, pays for a fork and join at a smaller size than a copy like im2col).
    """
    limit = getattr(kernel, "parallel_min_size", PARALLEL_MIN_SIZE)

    def run(*args, **kw):
        _start()
        work = max((a.size for a in args if hasattr(a, "size") and hasattr(a, "dtype")), default=0)
        _numba_threads(1 if work < limit else max_threads())
        return kernel(*args, **kw)
    run.__name__, run.__doc__, run.__wrapped__ = kernel.__name__, kernel.__doc__, kernel
    return run


@contextlib.contextmanager
def gemm(macs):
    """Run the matrix products of the block on one BLAS thread when they are small (``macs`` multiply-adds)."""
    global _blas
    _start()  # the NumPy kernels call no Numba kernel: the settings of _start apply from the first product
    if macs >= BLAS_PARALLEL_MIN_MACS:
        yield
        return
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController().select(user_api="blas").lib_controllers
    before = [lib.get_num_threads() for lib in _blas]
    for lib, n in zip(_blas, before):
        if n != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(_blas, before):
            if n != 1:
                lib.set_num_threads(n)


def set_num_threads(n):
    """Cap tinyconv's CPU parallelism at ``n`` threads: the Numba kernels and the BLAS library.

    ``n=None`` lifts the cap (every core again).  The BLAS limit applies process-wide (threadpoolctl).
    """
    global _limit, _blas_limiter
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f"set_num_threads: expected a positive integer or None, got {n!r}")
    _start()
    _limit = None if n is None else int(n)
    _local.numba_threads = None
    if _blas_limiter is not None:
        _blas_limiter.restore_original_limits()
        _blas_limiter = None
    if n is not None:
        from threadpoolctl import threadpool_limits
        _blas_limiter = threadpool_limits(limits=int(n), user_api="blas")


def _forget_pool():
    """In a forked child: the parent's helper threads do not exist there, so the next split makes a new pool."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _threadsafe_kernels():
    """Whether Numba's parallel kernels may be called from two threads at once: yes with its OpenMP or TBB
    layer; its fallback layer, ``workqueue``, aborts the process on concurrent calls."""
    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        return False


def split_work(fn, items):
    """``[fn(item) for item in items]``, the items cut into ``max_threads()`` contiguous runs done at once.

    The calling thread does the first run, helper threads the others; results come back in ``items``' order
    and an exception in any run is raised here.  Serial for one thread, one item, or when called from a
    helper thread (no nesting), and under Numba's ``workqueue`` layer (see ``_threadsafe_kernels``).
    """
    global _pool, _pool_size
    _start()
    T = min(max_threads(), len(items))
    if T < 2 or getattr(_local, "helper", False) or not _threadsafe_kernels():
        return [fn(item) for item in items]
    if _pool is None or _pool_size < T - 1:
        _pool, _pool_size = ThreadPoolExecutor(max_workers=T - 1, thread_name_prefix="tinyconv",
                                               initializer=setattr, initargs=(_local, "helper", True)), T - 1
    runs = [items[k * len(items) // T:(k + 1) * len(items) // T] for k in range(T)]
    futures = [_pool.submit(lambda run: [fn(item) for item in run], run) for run in runs[1:]]
    try:
        first = [fn(item) for item in runs[0]]
    finally:
        rest = [future.result() for future in futures]  # waits for every run, even if the first failed
    return first + [r for run in rest for r in run]


def get_num_threads():
    """The cap set by ``set_num_threads`` (the number of cores when none is set)."""
    return _limit if _limit is not None else (os.cpu_count() or 1)


@contextlib.contextmanager
def num_threads(n):
    """``with tinyconv.threads.num_threads(1): ...``: ``set_num_threads(n)`` for the block, then the previous cap."""
    prev = _limit
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(prev)


def thread_policy():
    """One line describing the policy in force (printed by the benchmarks)."""
    _start()
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = numba.config.THREADING_LAYER
    wait = os.environ.get("OMP_WAIT_POLICY") or ("GOMP_SPINCOUNT" in os.environ and "GOMP_SPINCOUNT") or "PASSIVE"
    cap = f"capped at {_limit}" if _limit else "no cap"
    return (f"Numba kernels below {PARALLEL_MIN_SIZE:,} elements on 1 thread, larger ones on {max_threads()} "
            f"(layer {layer}, idle wait {wait}); conv/linear GEMMs below {BLAS_PARALLEL_MIN_MACS:,} MACs on "
            f"1 BLAS thread; {cap}")
