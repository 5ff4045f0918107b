"""Interleaved timing: every implementation of one workload is timed in the same rounds, in rotating order.

On a shared machine the load changes from second to second; timing tinyconv for ten seconds and then PyTorch
for ten would compare two different machines.  Here each round runs every implementation once (one *sample*:
enough calls to last about ``min_sample`` seconds), the order rotating from round to round, and the result is
the median over the rounds of the time per call.
"""
import statistics
import time


def _timed(fn, number):
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def measure(impls, reps, min_sample=0.1, max_number=50, settle=0.05):
    """Median seconds per call of each callable in ``impls`` (name -> zero-argument function).

    Each function is called once untimed (first-touch of its buffers), then once to size its samples.
    Before each sample the process sleeps ``settle`` seconds, so the worker threads of the previous
    implementation (OpenMP and BLAS pools spin-wait for a while after their work) are idle again.
    Returns ``{name: {"median": s, "min": s, "samples": [s, ...]}}``.
    """
    names = list(impls)
    number = {}
    for name in names:
        impls[name]()
        t = _timed(impls[name], 1)
        number[name] = max(1, min(max_number, int(min_sample / max(t, 1e-9))))
    samples = {name: [] for name in names}
    for r in range(reps):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            time.sleep(settle)
            samples[name].append(_timed(impls[name], number[name]))
    return {name: {"median": statistics.median(s), "min": min(s), "samples": s} for name, s in samples.items()}
