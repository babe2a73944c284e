"""asv benchmark suites of moebench (run with ``asv run --python=same``).

* :mod:`benchmarks.bench_moments` -- the streaming moment kernels, the whitening, the
  dense d^3 reference and the machine's floor kernels (``X @ W``, ``X^T X``) measured
  in the same run, so ratios to the floor come from one set of results.
* :mod:`benchmarks.bench_algorithms` -- the tensor power method, one gating EM step,
  and one full fit of every registered algorithm with a ``track_`` of its expert error.
* :mod:`benchmarks.bench_em_backend` -- the EM steps and two fits on numpy and on torch
  (CUDA where there is one).

:mod:`benchmarks.common` (data and thread policy) and :mod:`benchmarks.plain` (the plain
numpy yardstick) are their helpers. ``tools/asv_report.py`` turns asv's JSON results into
``results/performance/``.
"""
