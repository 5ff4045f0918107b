"""tinyconv's benchmark suite: tinyconv (Numba and NumPy-reference paths) against PyTorch, side by side.

Run ``python -m benchmarks`` (or ``python benchmarks/run.py``); ``--quick`` for a short version.  Results go to
``benchmarks/RESULTS.md``.  Benchmarks are not tests: ``tests/test_benchmarks_smoke.py`` only checks that the
code paths run.
"""
