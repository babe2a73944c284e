"""Shared set-up of the asv suites: thread policy and fixed-seed kernel inputs.

Thread policy: every suite runs its BLAS (threadpoolctl) and torch with
``MOEBENCH_BENCH_THREADS`` threads, 1 by default, so timings are reproducible on a
shared machine and measure one core's efficiency; ``MOEBENCH_BENCH_THREADS=0``
leaves the libraries' own defaults.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

BENCH_THREADS = int(os.environ.get("MOEBENCH_BENCH_THREADS", "1"))


def _apply_thread_policy() -> None:
    if BENCH_THREADS <= 0:
        return
    threadpool_limits(limits=BENCH_THREADS)
    try:
        import torch

        torch.set_num_threads(BENCH_THREADS)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


_apply_thread_policy()

#: The grid of the kernel suites (issue 6).
N_VALUES = [100_000, 1_000_000]
D_VALUES = [10, 100]
K_VALUES = [3, 10]


#: Where generated inputs are cached as .npy (drawing 10^8 normals costs seconds per
#: set-up); ``MOEBENCH_BENCH_CACHE=""`` disables the cache.
CACHE_DIR = os.environ.get(
    "MOEBENCH_BENCH_CACHE", os.path.join(tempfile.gettempdir(), "moebench-bench-cache")
)


def _cached(name: str, make):
    if not CACHE_DIR:
        return make()
    path = Path(CACHE_DIR) / f"{name}.npy"
    if path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass
    arr = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, arr)
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache directory only costs time
        pass
    return arr


def kernel_data(n: int, d: int, k: int, dtype=np.float64, seed: int = 0):
    """``X`` (n, d) standard normal in ``dtype``, weights ``s2 >= 0``, ``s3``, and an
    orthonormal-column ``W`` (d, k), all from ``default_rng(seed)``.

    ``s2`` is a chi-square weight (like ``S2(y) = y^2`` for linear experts), ``s3`` a
    standard normal weight; the kernels' cost does not depend on their values. ``X``
    is cached on disk (:data:`CACHE_DIR`), keyed by (n, d, dtype, seed).
    """
    rng = np.random.default_rng(seed)
    dt = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    X = _cached(f"X_{n}_{d}_{np.dtype(dt).name}_{seed}",
                lambda: np.random.default_rng(seed).standard_normal((n, d), dtype=dt))
    s2 = rng.standard_normal(n) ** 2
    s3 = rng.standard_normal(n)
    W = np.linalg.qr(rng.standard_normal((d, k)))[0]
    return X, s2, s3, W
