"""Which committed results folders CI verifies (`.ci/run`), one line per folder.

Usage: ``python .ci/verify_plan.py RESULTS_ROOT MAX_WALL_TIME SAMPLE``. Prints
``verify DIR N`` for a folder whose every run was made by the current code version
(``moebench verify`` refuses others) and that has fast runs (stored ``wall_time`` at most
MAX_WALL_TIME seconds, not timed out) to re-run: N = min(SAMPLE, their count); otherwise
``skip DIR: REASON``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from moebench.sweep.rerun import stored_cells
from moebench.version import NUMERICS_VERSION, UNVERSIONED


def plan(folder: Path, max_wall_time: float, sample: int) -> str:
    """The plan line of one folder."""
    summary_path, config = folder / "summary.parquet", folder / "config.toml"
    if not summary_path.is_file() or not config.is_file():
        return f"skip {folder}: no summary.parquet or config.toml"
    summary = pd.read_parquet(summary_path)
    if summary.empty:
        return f"skip {folder}: no runs"
    versions = (summary["code_version"].fillna(UNVERSIONED).astype(int)
                if "code_version" in summary.columns
                else pd.Series(UNVERSIONED, index=summary.index))
    old = int((versions != NUMERICS_VERSION).sum())
    if old:
        found = ", ".join(str(v) for v in sorted(set(versions)))
        return (f"skip {folder}: {old} of {len(summary)} runs were made by code version(s) "
                f"{found}, not the current {NUMERICS_VERSION} (re-run with --rerun-stale)")
    fast = int(((summary["wall_time"] <= max_wall_time) & (summary["status"] != "timeout")).sum())
    if not fast:
        return f"skip {folder}: no run with a stored wall_time <= {max_wall_time:g} s"
    try:  # a real-data config needs its data file (relative paths: from the repository root)
        stored_cells(folder)
    except (ValueError, OSError) as exc:
        return f"skip {folder}: its config cannot be rebuilt here ({exc})"
    return f"verify {folder} {min(sample, fast)}"


def main(argv: list[str]) -> int:
    root, max_wall_time, sample = Path(argv[0]), float(argv[1]), int(argv[2])
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        print(plan(folder, max_wall_time, sample))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
