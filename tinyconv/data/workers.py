"""Worker processes that build a ``DataLoader``'s batches while the training step runs (``num_workers > 0``).

A batch is a pure function of ``(dataset, transform, seed, epoch, batch index, sample indices)``: the
loader's randomness is counter-based (``loader.py``).  So a worker needs no state from the main process
beyond the dataset and the transform it was started with, and the batches come out exactly as with
``num_workers=0``: the main process keeps up to ``num_workers * prefetch_factor`` batches in flight and
takes them in order.  Workers return NumPy arrays; the main process wraps them into Tensors and copies
them to the device.

Shutdown: workers ignore SIGINT (Ctrl-C reaches the whole process group; the main process alone
decides), and the pool is terminated and joined when the epoch's loop ends, is abandoned (``break``), or
raises (an error in a worker is re-raised in the main process, Ctrl-C included); with
``persistent_workers=True`` the pool lives until the loader is garbage-collected or ``close()``\\ d, and at
interpreter exit at the latest.
"""
import collections
import signal
import weakref

import numpy as np

_state = None  # in a worker: (dataset, transform, dtype, build_fn)


def _init_worker(dataset, transform, dtype, build):
    global _state
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _state = (dataset, transform, dtype, build)


def _work(seed, epoch, b, indices):
    dataset, transform, dtype, build = _state
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch, 1, b)))
    return build(dataset, transform, dtype, indices, rng)


class WorkerPool:
    """``num_workers`` processes started with ``context`` (``'fork'`` where available, else ``'spawn'``;
    with ``'spawn'``/``'forkserver'`` the dataset and transform must be picklable)."""

    def __init__(self, num_workers, dataset, transform, dtype, build, context=None):
        import multiprocessing  # here: most programs never start workers, and ``import tinyconv`` stays quick
        if context is None:
            context = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(context) if isinstance(context, str) else context
        self.pool = ctx.Pool(num_workers, initializer=_init_worker, initargs=(dataset, transform, dtype, build))
        self._finalizer = weakref.finalize(self, _shutdown, self.pool)

    def batches(self, jobs, in_flight):
        """Yield the results of ``jobs`` (tuples of ``_work``'s arguments) in order, ``in_flight`` ahead."""
        pending = collections.deque()
        jobs = iter(jobs)
        for job in jobs:
            pending.append(self.pool.apply_async(_work, job))
            if len(pending) >= in_flight:
                break
        while pending:
            result = pending.popleft().get()
            for job in jobs:  # refill before handing the batch over: workers run while the step does
                pending.append(self.pool.apply_async(_work, job))
                break
            yield result

    def close(self):
        """Terminate the workers and wait for them (idempotent)."""
        self._finalizer()


def _shutdown(pool):
    pool.terminate()
    pool.join()
