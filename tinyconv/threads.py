"""CPU threads and memory: the user's knobs.  The thread policy itself lives with the kernels.

How tinyconv's work is spread over the CPU's cores (which Numba kernels run on several threads, the BLAS
thread count around small products, the helper threads a small convolution splits its images across) is
decided below the seam, in ``kernels/threads.py`` (``tinyconv_kernels.threads``, whose docstring gives the
policy and the measurements behind it); no op imports it.  This module is what a user touches:

- ``set_num_threads(n)`` / ``get_num_threads()`` / ``num_threads(n)``: cap the Numba kernels and BLAS at ``n``
  threads (``TINYCONV_THREADS=n`` in the environment does the same); ``set_num_threads(1)`` is the right
  choice when several training processes share the machine.
- ``thread_policy()``: one line describing the policy in force (printed by the benchmarks).
- ``large_product_threads()`` / ``large_products_on(n)``: the BLAS thread count of the large matrix products
  (their last bits depend on it; ``fit`` holds a resumed run to its checkpoint's count).
- ``tune_malloc()``: let glibc keep freed memory for reuse, in one heap.  ``import tinyconv`` calls it once
  (see below).

**The allocator.**  glibc's ``malloc`` hands memory back to the OS as soon as more than a few MB are free at the
top of its heap (the limit follows the largest block freed, at most 32 MB), so a training step, which frees and
allocates the same activation-sized arrays every time, took them back from the OS each step: one page fault per
4 KiB, zero-filled by the kernel.  LeNet-5 at batch 64 took 1,500 page faults and 3.5 ms of system time per step
(a quarter of the step), ResNet-18 at batch 16 12,000 and 36 ms.  ``tune_malloc`` raises the trim threshold to
``MALLOC_TRIM_MIB`` and serves blocks below ``MALLOC_MMAP_MIB`` from the heap (glibc only): freed memory is
reused without faults, and the peak of a step does not change (the benchmarks' peak-memory table read the same).
It also holds glibc to ``MALLOC_ARENAS`` heap (by default glibc gives each new thread a heap of its own): the
helper threads that share out a convolution's chunks allocate arrays too, and what they freed stayed in their
own heap, unused by the main thread, and counted in the peak: LeNet-5's first step (batch 64, two threads)
peaked 7.0-7.9 MiB above the weights in four runs, with one heap 5.7-5.9.  These are process-wide settings, so
they are made in one visible place, ``tinyconv/__init__.py``, when tinyconv is imported, and never when the
user chose for themselves: setting ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_ARENA_MAX`` in the environment (glibc's own variables) keeps glibc's behaviour as configured, and
``TINYCONV_TUNE_MALLOC=0`` keeps glibc's defaults.
"""
import contextlib
import ctypes
import os
import platform

from . import backend

MALLOC_TRIM_MIB = 128   # free memory glibc keeps at the top of its heap instead of returning it
MALLOC_MMAP_MIB = 32    # blocks at least this large are mapped (and unmapped when freed) on their own
MALLOC_ARENAS = 1       # one heap for every thread: a helper thread's freed arrays are reused by the others


def tune_malloc():
    """Let glibc keep freed memory for reuse, in one heap (see the module docstring); True when the settings were
    made."""
    if os.environ.get("TINYCONV_TUNE_MALLOC") == "0":
        return False
    if any(k in os.environ for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX")):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # <malloc.h>
    return bool(mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_MIB << 20) and mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_MIB << 20)
                and mallopt(M_ARENA_MAX, MALLOC_ARENAS))


def set_num_threads(n):
    """Cap tinyconv's CPU parallelism at ``n`` threads: the Numba kernels, BLAS and the convolutions' helper
    threads.  ``n=None`` lifts the cap (every core again).  The BLAS limit applies process-wide (threadpoolctl)."""
    backend.cpu_threads().set_num_threads(n)


def get_num_threads():
    """The cap set by ``set_num_threads`` (the number of cores when none is set)."""
    return backend.cpu_threads().get_num_threads()


@contextlib.contextmanager
def num_threads(n):
    """``with tinyconv.threads.num_threads(1): ...``: ``set_num_threads(n)`` for the block, then the previous cap."""
    with backend.cpu_threads().num_threads(n):
        yield


def large_product_threads():
    """BLAS threads for a large matrix product (at least ``BLAS_PARALLEL_MIN_MACS`` multiply-adds): the count
    held by ``large_products_on``, else the cap, else the library's default."""
    return backend.cpu_threads().large_product_threads()


@contextlib.contextmanager
def large_products_on(n):
    """Run this thread's large products on ``n`` BLAS threads in the block (a resumed run keeps its
    checkpoint's count, so that it is bit-exact)."""
    with backend.cpu_threads().large_products_on(n):
        yield


def thread_policy():
    """One line describing the thread policy in force (printed by the benchmarks)."""
    return backend.cpu_threads().thread_policy()
