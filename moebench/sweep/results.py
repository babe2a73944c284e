"""Stored sweep results: one atomic parquet file per run, consolidated tables, provenance.

Layout of a results directory::

    runs/<run_id>.parquet   one finished run: its checkpoints as rows, its summary
                            (parameters, final metrics, status, provenance) as JSON in
                            the parquet metadata key ``moebench_summary``
    checkpoints.parquet     every run's checkpoints, one row per run and checkpoint
    summary.parquet         one row per run
    config.toml             the config the sweep ran

A run file is written to a temporary name in ``runs/`` and moved into place with
:func:`os.replace`, so a file named ``<run_id>.parquet`` is always complete: a
sweep killed at any moment (even SIGKILL) leaves at most a temporary file, which
is ignored and cleaned up by the next run.
"""

from __future__ import annotations

import functools
import io
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SUMMARY_KEY = b"moebench_summary"
RUNS_DIR = "runs"
TMP_PREFIX = ".tmp-"
CHECKPOINT_COLUMNS = ("phase", "iteration", "time", "log_likelihood", "expert_error",
                      "gating_error")
#: summary columns joined onto every checkpoint row of the long table
CHECKPOINT_JOIN_EXCLUDE = ("expert_error", "expert_max_angle", "gating_error", "message",
                           "warnings", "train_log_likelihood", "test_log_likelihood", "test_mse")


# --------------------------------------------------------------------------- provenance
@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The git commit of the moebench source tree (``-dirty`` when modified), or ""."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "moebench",
                                "baselines"], capture_output=True, text=True, timeout=5).stdout
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


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, str]:
    """Versions, BLAS, CPU and platform of this process, as string columns."""
    import scipy
    from threadpoolctl import threadpool_info

    import moebench

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = ""
    blas = sorted({f"{p.get('internal_api')} {p.get('version')}" for p in threadpool_info()
                   if p.get("user_api") == "blas"})
    return {
        "moebench_version": moebench.__version__,
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


# --------------------------------------------------------------------------- run files
def runs_dir(out: str | os.PathLike) -> Path:
    return Path(out) / RUNS_DIR


def run_path(out: str | os.PathLike, run_id: str) -> Path:
    return runs_dir(out) / f"{run_id}.parquet"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _checkpoint_frame(checkpoints: list[dict[str, Any]]) -> pd.DataFrame:
    cols: dict[str, list[Any]] = {c: [] for c in CHECKPOINT_COLUMNS}
    for rec in checkpoints:
        for c in CHECKPOINT_COLUMNS:
            cols[c].append(rec.get(c, "" if c == "phase" else np.nan))
    frame = pd.DataFrame(cols)
    frame["phase"] = frame["phase"].astype(str)
    frame["iteration"] = frame["iteration"].astype("int64")
    for c in CHECKPOINT_COLUMNS[2:]:
        frame[c] = frame[c].astype("float64")
    return frame


def write_run(out: str | os.PathLike, summary: dict[str, Any],
              checkpoints: list[dict[str, Any]]) -> Path:
    """Write one finished run atomically; returns its path."""
    table = pa.Table.from_pandas(_checkpoint_frame(checkpoints), preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[SUMMARY_KEY] = json.dumps(_jsonable(summary)).encode()
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    path = run_path(out, summary["run_id"])
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_run_summary(path: str | os.PathLike) -> dict[str, Any]:
    """The summary dict stored in a run file."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[SUMMARY_KEY])


def read_run(path: str | os.PathLike) -> tuple[dict[str, Any], pd.DataFrame]:
    """(summary, checkpoints frame) of one run file."""
    table = pq.read_table(path)
    summary = json.loads((table.schema.metadata or {})[SUMMARY_KEY])
    return summary, table.to_pandas()


def finished_run_ids(out: str | os.PathLike) -> set[str]:
    """Ids of the runs whose file is in place (temporary files never count)."""
    d = runs_dir(out)
    if not d.is_dir():
        return set()
    return {p.name[: -len(".parquet")] for p in d.iterdir()
            if p.name.endswith(".parquet") and not p.name.startswith(TMP_PREFIX)}


def clean_temporaries(out: str | os.PathLike) -> int:
    """Delete temporary files left by a killed sweep; returns how many."""
    d = runs_dir(out)
    count = 0
    if d.is_dir():
        for p in d.iterdir():
            if p.name.startswith(TMP_PREFIX):
                p.unlink(missing_ok=True)
                count += 1
    for p in Path(out).glob(f"{TMP_PREFIX}*"):
        p.unlink(missing_ok=True)
        count += 1
    return count


# --------------------------------------------------------------------------- tables
def _write_frame(frame: pd.DataFrame, path: Path) -> None:
    buf = io.BytesIO()
    if path.suffix == ".csv":
        buf.write(frame.to_csv(index=False).encode())
    else:
        frame.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _uniform_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast columns mixing value types (e.g. a parameter that is "auto" or 256) to str."""
    for col in frame.columns:
        if frame[col].dtype == object:
            kinds = {type(v) for v in frame[col] if not _missing(v)}
            if len(kinds) > 1 and not kinds <= {int, float}:
                frame[col] = frame[col].map(lambda v: None if _missing(v) else str(v))
    return frame


def consolidate(out: str | os.PathLike, run_ids: list[str] | None = None, csv: bool = False
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gather run files into ``summary.parquet`` and ``checkpoints.parquet`` (and CSVs).

    Parameters
    ----------
    out : path
        The results directory.
    run_ids : list of str, optional
        Only these runs (those of a config); default every run file.
    csv : bool
        Also write ``summary.csv`` and ``checkpoints.csv``.

    Returns
    -------
    summary, checkpoints : DataFrame
    """
    out = Path(out)
    have = finished_run_ids(out)
    ids = sorted(have) if run_ids is None else [r for r in run_ids if r in have]
    summaries, frames = [], []
    for rid in ids:
        summary, ck = read_run(run_path(out, rid))
        summaries.append(summary)
        ck.insert(0, "run_id", rid)
        frames.append(ck)
    summary_df = _uniform_types(pd.DataFrame(summaries))
    if frames:
        ck_df = pd.concat(frames, ignore_index=True)
    else:
        ck_df = _checkpoint_frame([])
        ck_df.insert(0, "run_id", pd.Series([], dtype=str))
    if not summary_df.empty:
        join = [c for c in summary_df.columns if c not in CHECKPOINT_JOIN_EXCLUDE
                and c not in ck_df.columns or c == "run_id"]
        ck_df = ck_df.merge(summary_df[join], on="run_id", how="left")
    _write_frame(summary_df, out / "summary.parquet")
    _write_frame(ck_df, out / "checkpoints.parquet")
    if csv:
        _write_frame(summary_df, out / "summary.csv")
        _write_frame(ck_df, out / "checkpoints.csv")
    return summary_df, ck_df


def load_results(results: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, checkpoints) of a results directory (or of its summary.parquet).

    Consolidates the run files first when the directory has no tables yet.
    """
    path = Path(results)
    if path.is_file() and path.suffix == ".parquet":
        path = path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"no results directory {str(results)!r}")
    s, c = path / "summary.parquet", path / "checkpoints.parquet"
    if not (s.is_file() and c.is_file()):
        if not finished_run_ids(path):
            raise FileNotFoundError(
                f"{path} holds no results (no summary.parquet and no runs/*.parquet); "
                f"run `moebench run CONFIG --out {path}` first")
        return consolidate(path)
    return pd.read_parquet(s), pd.read_parquet(c)
