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
  thread below ``BLAS_PARALLEL_MIN_MACS`` (2**26, about a millisecond on one core) and to
  ``large_product_threads()`` (the cap, else the library's default) above it, whichever Python thread runs
  them: the last bits of a product depend on how many threads split it, so this makes them a function of
  the product alone.  The count is process-wide, so blocks that need different counts take turns (two
  models trained at once in two threads give the same bits as each trained alone).  The count is set with
  OpenBLAS's ``openblas_set_num_threads_local``, which works from any thread; ``openblas_set_num_threads``
  (what threadpoolctl calls) is ignored off the main thread by OpenBLAS 0.3.31.
  (OpenBLAS's idle threads spin for about 0.1 s after a parallel product; ``OPENBLAS_THREAD_TIMEOUT=4`` in
  the environment before NumPy is imported shortens that.)
- **A small convolution splits its images across threads instead.**  Below ``BLAS_PARALLEL_MIN_MACS`` a
  convolution's products run on one BLAS thread, but its batch is already cut into chunks of images
  (``kernels/conv2d.py``): ``split_work`` shares the chunks out among the caller and a pool of
  ``max_threads() - 1`` Python threads, each taking the next chunk not yet taken and doing its im2col, GEMMs
  and col2im on one core (the Numba kernels release the GIL, NumPy's matmul too); the caller never waits
  for a helper that has not started.  Every chunk is computed as it would be alone, so results do not
  depend on the thread count.  Measured on an idle 2-core machine: LeNet-5's C1 and C3 forward 1.5-1.6x
  faster; with the other core busy, see ``split_work``.
- **One knob for both pools**: ``tinyconv.set_num_threads(n)`` (or ``TINYCONV_THREADS=n``) caps the Numba
  kernels and BLAS at ``n`` threads; ``set_num_threads(1)`` is the right choice when several training
  processes share the machine.

This module belongs to the kernels (``tinyconv_kernels.threads``): the ops above the seam never import it.
``tinyconv.set_num_threads`` and ``tinyconv.threads`` are the user's handles on it, through ``tinyconv.backend``.
"""
import contextlib
import contextvars
import ctypes
import numbers
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

PARALLEL_MIN_SIZE = 1 << 24
BLAS_PARALLEL_MIN_MACS = 1 << 26

_started = False
_limit = None          # the cap set by set_num_threads / TINYCONV_THREADS (None: every core)
_local = threading.local()  # Numba's thread count is per calling thread; remember what we set
_blas = None           # threadpoolctl's controllers of the BLAS libraries loaded (found once)
_setters = None        # per library: its thread-count setter (found once: a product block sets it twice)
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
        if not _started:
            _start()
        work = 0  # the largest array's size (a loop: this runs at every kernel call)
        for a in args:
            if isinstance(a, np.ndarray) and a.size > work:
                work = a.size
        _numba_threads(1 if work < limit else max_threads())
        return kernel(*args, **kw)
    run.__name__, run.__doc__, run.__wrapped__ = kernel.__name__, kernel.__doc__, kernel
    return run


# -- the BLAS policy: how many threads each matrix product of the layers runs on --------------------------
# OpenBLAS splits a product's rows and columns among its threads, and the last bits of the result depend on
# that split (measured with OpenBLAS 0.3.31: 1 and 2 threads differ, and so does a product cut in two row
# blocks on one thread).  So the count a product runs on must be a function of the product alone, not of
# which Python thread runs it or of what another thread is doing: products below BLAS_PARALLEL_MIN_MACS run
# on one thread, larger ones on ``large_product_threads()``.  The count is process-wide state of the library,
# so blocks that need different counts take turns (``_blas_turn``); blocks that need the same one run at once.
_blas_turn = threading.Condition()
_blas_now = [None, 0]  # the count BLAS is set to for the blocks running now, and how many blocks run
_blas_default = None   # the library's own count, found with it
_large = contextvars.ContextVar("tinyconv_large_product_threads", default=None)


def _blas_libs(rescan=False):
    """threadpoolctl's controllers of the BLAS libraries loaded (found once, with their default count; again
    with ``rescan``, for libraries loaded since, such as PyTorch's: the default stays the one found first)."""
    global _blas, _blas_default, _setters
    if _blas is None or rescan:
        from threadpoolctl import ThreadpoolController
        libs = ThreadpoolController().select(user_api="blas").lib_controllers
        if _blas_default is None:
            _blas_default = max([lib.get_num_threads() for lib in libs], default=1)
        _blas, _setters = libs, None
    return _blas


def _local_setter(lib):
    """OpenBLAS's ``openblas_set_num_threads_local`` (0.3.27+), or None.  threadpoolctl calls
    ``openblas_set_num_threads``, which OpenBLAS (0.3.31, pthreads) ignores off the main thread; this one
    works from any thread (and sets the same process-wide count)."""
    if getattr(lib, "internal_api", None) != "openblas":
        return None
    dll = getattr(lib, "dynlib", None) or ctypes.CDLL(lib.filepath)
    prefix = getattr(lib, "prefix", "openblas")
    for name in ("openblas_set_num_threads_local", f"{prefix}_set_num_threads_local",
                 f"{prefix}_set_num_threads_local64_"):
        fn = getattr(dll, name, None)
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            return fn
    return None


def _set_blas_threads(n):
    """Set every BLAS library to ``n`` threads, from whichever Python thread calls."""
    global _setters
    if _setters is None:
        _setters = [_local_setter(lib) or lib.set_num_threads for lib in _blas_libs()]
    for setter in _setters:
        setter(n)


def large_product_threads():
    """BLAS threads for a product of at least ``BLAS_PARALLEL_MIN_MACS`` multiply-adds: the count held by
    ``large_products_on`` (a resumed run keeps its checkpoint's), else the cap, else the library's default."""
    _blas_libs()
    return _large.get() or _limit or _blas_default


@contextlib.contextmanager
def large_products_on(n):
    """Run this thread's large products on ``n`` BLAS threads in the block (``fit`` resumes with the count
    the checkpoint's run used, so that the resumed run is bit-exact; see the README's "Reproducibility")."""
    token = _large.set(int(n) if n else None)
    try:
        yield
    finally:
        _large.reset(token)


@contextlib.contextmanager
def gemm(macs):
    """Run the block's matrix products (``macs`` multiply-adds each, at most) on the BLAS thread count the
    policy gives them: one thread below ``BLAS_PARALLEL_MIN_MACS``, ``large_product_threads()`` above."""
    _start()  # the NumPy kernels call no Numba kernel: the settings of _start apply from the first product
    if getattr(_local, "in_gemm", False):   # nested: the products run under the outer block's count
        yield
        return
    n = 1 if macs < BLAS_PARALLEL_MIN_MACS else large_product_threads()
    with _blas_turn:
        while _blas_now[1] and _blas_now[0] != n:
            _blas_turn.wait()
        if _blas_now[0] != n:
            _set_blas_threads(n)
            _blas_now[0] = n
        _blas_now[1] += 1
    _local.in_gemm = True
    try:
        yield
    finally:
        _local.in_gemm = False
        with _blas_turn:
            _blas_now[1] -= 1
            if _blas_now[1] == 0:
                resting = _limit or _blas_default   # other products (tc.matmul, user code) run on the cap
                if _blas_now[0] != resting:
                    _set_blas_threads(resting)
                    _blas_now[0] = resting
                _blas_turn.notify_all()


def set_num_threads(n):
    """Cap tinyconv's CPU parallelism at ``n`` threads: the Numba kernels and the BLAS library.

    ``n=None`` lifts the cap (every core again).  The BLAS limit applies process-wide, set from any thread.
    """
    global _limit
    if n is not None and (not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1):
        raise ValueError(f"set_num_threads: expected a positive integer or None, got {n!r}")
    _start()
    _limit = None if n is None else int(n)
    _local.numba_threads = None
    with _blas_turn:                # from any thread; blocks running now keep their count until they end
        _blas_libs(rescan=True)     # the cap also reaches a BLAS library loaded after the first product
        if _blas_now[1] == 0:
            _set_blas_threads(_limit or _blas_default)
            _blas_now[0] = _limit or _blas_default


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
    """``[fn(item) for item in items]``, the items shared out among the calling thread and up to
    ``max_threads() - 1`` helper threads, each taking the next item not yet taken.

    Results come back in ``items``' order and the first exception (in that order) is raised here; each item
    is computed as it would be alone, so the results do not depend on who computed which.  The caller takes
    items too and never waits for a helper that has not started: on a busy machine, where a helper thread
    may wait a whole time slice to run, the caller does the work itself (it waits only for items a helper has
    taken).  A static split, each thread a fixed half, made the caller wait for the other half at every
    call: LeNet-5's epoch on two threads took 11.4 s against 8.0 on one with the other core busy.
    Serial for one thread, one item, or when called from a helper thread (no nesting), and under Numba's
    ``workqueue`` layer (see ``_threadsafe_kernels``).
    """
    global _pool, _pool_size
    _start()
    T = min(max_threads(), len(items))
    if T < 2 or getattr(_local, "helper", False) or not _threadsafe_kernels():
        return [fn(item) for item in items]
    if _pool is None or _pool_size < T - 1:
        _pool, _pool_size = ThreadPoolExecutor(max_workers=T - 1, thread_name_prefix="tinyconv",
                                               initializer=setattr, initargs=(_local, "helper", True)), T - 1
    results, errors = [None] * len(items), [None] * len(items)
    state = {"next": 0, "left": len(items)}
    lock, finished = threading.Lock(), threading.Condition(threading.Lock())

    def work():
        while True:
            with lock:
                i = state["next"]
                if i == len(items):
                    return
                state["next"] = i + 1
            try:
                results[i] = fn(items[i])
            except BaseException as e:  # re-raised by the caller, in item order
                errors[i] = e
            with finished:
                state["left"] -= 1
                if state["left"] == 0:
                    finished.notify_all()

    for _ in range(T - 1):
        _pool.submit(work)
    work()
    with finished:  # only items a helper took and has not finished are left
        while state["left"]:
            finished.wait()
    for e in errors:
        if e is not None:
            raise e
    return results


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
