"""Provenance of a run: code version, kernel path, library versions, BLAS, CPU, platform."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np


# --------------------------------------------------------------------------- provenance
@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The git commit of the moebench source tree (``-dirty`` when modified), or ""."""
    root = Path(__file__).resolve().parents[3]
    # read-only: `git status` must not refresh (and lock) the index, which a killed
    # status (the timeout, a full disk) would leave locked for the user's next commit
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True, env=env).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "moebench",
                                "baselines"], capture_output=True, text=True, timeout=5,
                               env=env).stdout
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: provenance column: the version of the numbers the code computes (see moebench.version)
CODE_VERSION_COLUMN = "code_version"
#: provenance column: which moment kernels the numpy backend uses ("fused" or "blas")
KERNEL_PATH_COLUMN = "kernel_path"


def kernel_path() -> str:
    """``"fused"`` when the fused C kernels compute the weighted Gram matrices (T2, the
    EM's systems) and the whitened T3 in this process
    (:data:`moebench.backend.FUSED_KERNELS`: built, AVX2 + FMA, and
    ``MOEBENCH_FUSED_KERNELS`` not ``0``), else ``"blas"`` (numpy's BLAS does)."""
    from moebench import backend

    return "fused" if backend.FUSED_KERNELS else "blas"


def code_version_of(summary: Any) -> int:
    """The code version that made a stored run (its ``code_version``; 1 when absent).

    Parameters
    ----------
    summary : mapping
        A run's summary (or a summary-table row); records made before the column
        existed have none, or a missing value in a consolidated table, and count as
        :data:`moebench.version.UNVERSIONED`.
    """
    from moebench.version import UNVERSIONED

    value = summary.get(CODE_VERSION_COLUMN) if hasattr(summary, "get") else None
    if value is None or isinstance(value, bool) or (isinstance(value, float)
                                                    and not np.isfinite(value)):
        return UNVERSIONED
    try:
        return int(value)
    except (TypeError, ValueError):
        return UNVERSIONED


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    """Code version, kernel path, versions, BLAS, CPU and platform of this process.

    ``code_version`` (:data:`moebench.version.NUMERICS_VERSION`) is an integer; the
    other columns are strings. ``kernel_path`` is :func:`kernel_path`.
    """
    import scipy
    from threadpoolctl import threadpool_info

    from moebench.version import NUMERICS_VERSION, __version__

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = ""
    # the kernel too (OpenBLAS's architecture, e.g. Haswell or SkylakeX, which
    # OPENBLAS_CORETYPE selects): two kernels round differently in the last bits
    blas = sorted({" ".join(str(v) for v in (p.get("internal_api"), p.get("version"),
                                             p.get("architecture")) if v)
                   for p in threadpool_info() if p.get("user_api") == "blas"})
    return {
        CODE_VERSION_COLUMN: NUMERICS_VERSION,
        KERNEL_PATH_COLUMN: kernel_path(),
        "moebench_version": __version__,
        "git_commit": git_commit(),
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "torch_version": torch_version,
        "blas": "; ".join(blas),
        "cpu": _cpu_name(),
        "cpu_count": str(os.cpu_count()),
        "platform": platform.platform(),
        "hostname": platform.node(),
    }
