"""Stored sweep results: one atomic parquet file per run, consolidated tables, provenance.

Layout of a results directory::

    runs/<run_id>.parquet   one finished run: its checkpoints as rows, its summary
                            (parameters, final metrics, status, provenance) as JSON in
                            the parquet metadata key ``moebench_summary`` and the
                            sha256 of both in ``moebench_checksum``
    runs/.quarantine/       damaged or foreign files moved aside (never deleted)
    checkpoints.parquet     every run's checkpoints, one row per run and checkpoint
    summary.parquet         one row per run
    records.parquet         packed folders only: each run's summary exactly as its run
                            file stored it, and its checksum (see :func:`pack`)
    config.toml             the config the sweep ran

A run file is written to a temporary name in ``runs/`` and moved into place with
:func:`os.replace`, so a file named ``<run_id>.parquet`` is always complete: a
sweep killed at any moment (even SIGKILL) leaves at most a temporary file, which
is ignored and cleaned up by the next run. Every read verifies a run file (its
moebench metadata and its checksum); a file that fails is named in one warning
line on stderr and moved to ``runs/.quarantine/``, and its cell counts as not run.

A *packed* folder (:func:`pack`) holds every run in ``records.parquet`` and
``checkpoints.parquet`` instead of ``runs/``; it resumes (new runs are written to
``runs/`` as usual and merged by the next consolidation), plots and reports like
an unpacked one, and :func:`unpack` gives back run files with the same summaries
and checkpoint frames.

Packing may *thin* the checkpoints of long runs (``pack(out, thin_checkpoints=N)``,
``moebench pack --thin-checkpoints N``, see :func:`thin_checkpoint_rows`): each run
keeps the first and last checkpoint of every segment (a phase, or a restart within
it) and about ``N`` log-spaced iterations in between; its summary is untouched. A
thinned run records ``{"thin_checkpoints": N, "checkpoint_rows_full": rows}``: in
``records.parquet`` (columns of those names), in the metadata key
``moebench_thinning`` of its unpacked run file (covered by the checksum), and as the
summary-table column ``checkpoints_thinned`` (N, 0 for a complete run; the column
exists only in folders with a thinned run).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from moebench.io import TMP_PREFIX, atomic_write_bytes

SUMMARY_KEY = b"moebench_summary"
CHECKSUM_KEY = b"moebench_checksum"
PACK_KEY = b"moebench_pack"
THINNING_KEY = b"moebench_thinning"
#: format of a packed folder (2: some runs' checkpoints are thinned)
PACK_FORMAT = 1
PACK_FORMAT_THINNED = 2
#: valid range of ``thin_checkpoints`` (checkpoints kept per run segment, about)
THIN_RANGE = (2, 1_000_000)
#: summary-table column of a folder with thinned runs: the N of each run (0: complete)
THINNED_COLUMN = "checkpoints_thinned"
RUNS_DIR = "runs"
QUARANTINE_DIR = ".quarantine"
RECORDS_FILE = "records.parquet"
#: zstd level of the tables: 19 makes results/gridlock's checkpoints.parquet 13.7 MB instead of
#: 14.2 MB at level 9, for ~2 s more per 5e5 checkpoint rows
ZSTD_LEVEL = 19
#: float columns of the checkpoint table (stored byte-stream-split: they compress better)
_FLOAT_CHECKPOINT_COLUMNS = ("time", "log_likelihood", "expert_error", "gating_error")
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
    (:data:`moebench.tensor.backend.FUSED_KERNELS`: built, AVX2 + FMA, and
    ``MOEBENCH_FUSED_KERNELS`` not ``0``), else ``"blas"`` (numpy's BLAS does)."""
    from moebench.tensor import backend

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

    import moebench
    from moebench.version import NUMERICS_VERSION

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


# --------------------------------------------------------------------------- warnings
def warn(message: str) -> None:
    """One warning line on stderr (a damaged file, a stale table)."""
    print(f"moebench: warning: {message}", file=sys.stderr, flush=True)


class CorruptRunError(ValueError):
    """A run file (or packed record) that fails verification: unreadable, foreign or altered."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


# --------------------------------------------------------------------------- run files
def runs_dir(out: str | os.PathLike) -> Path:
    """The folder of the run files of the results directory ``out``."""
    return Path(out) / RUNS_DIR


def run_path(out: str | os.PathLike, run_id: str) -> Path:
    """The run file of ``run_id`` in the results directory ``out``."""
    return runs_dir(out) / f"{run_id}.parquet"


def quarantine_dir(out: str | os.PathLike) -> Path:
    """Where damaged or foreign files of ``runs/`` are moved (never deleted)."""
    return runs_dir(out) / QUARANTINE_DIR


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


def _thinning_json(thinning: dict[str, int]) -> bytes:
    return json.dumps({k: int(v) for k, v in thinning.items()}, sort_keys=True).encode()


def run_checksum(summary_json: str | bytes, frame: pd.DataFrame,
                 thinning: dict[str, int] | None = None) -> str:
    """``"sha256:<hex>"`` of a run's summary JSON and the canonical bytes of its checkpoints.

    The checkpoint part covers the row count and every column of
    ``CHECKPOINT_COLUMNS`` (phases as a JSON list, iterations as little-endian
    int64, the rest as little-endian float64), so it does not depend on how the
    table was stored or compressed. A run whose checkpoints were thinned
    (:func:`thin_checkpoint_rows`) passes its ``thinning`` record
    (``thin_checkpoints``, ``checkpoint_rows_full``), which the checksum covers too;
    a complete run's checksum is the same as before thinning existed.

    Raises
    ------
    ValueError
        When a checkpoint column is missing or holds values of the wrong kind.
    """
    h = hashlib.sha256(b"moebench-run-v1\0")
    h.update(len(frame).to_bytes(8, "little"))
    for c in CHECKPOINT_COLUMNS:
        if c not in frame.columns:
            raise ValueError(f"checkpoint column {c!r} is missing")
        col = frame[c]
        h.update(c.encode() + b"\0")
        if c == "phase":
            h.update(json.dumps([None if v is None else str(v) for v in col.tolist()]).encode())
        elif c == "iteration":
            if not (pd.api.types.is_integer_dtype(col) or len(col) == 0):
                raise ValueError(f"checkpoint column 'iteration' has dtype {col.dtype}")
            h.update(col.to_numpy(dtype="<i8").tobytes())
        else:
            h.update(col.to_numpy(dtype="<f8").tobytes())
    h.update(b"\0summary\0")
    h.update(summary_json.encode() if isinstance(summary_json, str) else summary_json)
    if thinning is not None:
        h.update(b"\0thinning\0" + _thinning_json(thinning))
    return "sha256:" + h.hexdigest()


def _run_file_bytes(summary_json: bytes, frame: pd.DataFrame,
                    thinning: dict[str, int] | None = None) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[SUMMARY_KEY] = summary_json
    if thinning is not None:
        meta[THINNING_KEY] = _thinning_json(thinning)
    meta[CHECKSUM_KEY] = run_checksum(summary_json, frame, thinning).encode()
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_run(out: str | os.PathLike, summary: dict[str, Any],
              checkpoints: list[dict[str, Any]]) -> Path:
    """Write one finished run atomically, with its checksum; returns its path."""
    data = _run_file_bytes(json.dumps(_jsonable(summary)).encode(),
                           _checkpoint_frame(checkpoints))
    path = run_path(out, summary["run_id"])
    atomic_write_bytes(path, data)
    return path


@dataclass
class RunRecord:
    """One verified run: its summary JSON exactly as stored, its checkpoints, its checksum.

    ``thinning`` is None for a run with every checkpoint, else its thinning record
    ``{"thin_checkpoints": N, "checkpoint_rows_full": rows}`` (see
    :func:`thin_checkpoint_rows`).
    """

    run_id: str
    summary_json: str
    checkpoints: pd.DataFrame
    checksum: str
    source: str  # "file" or "packed"
    thinning: dict[str, int] | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """The summary as a dict."""
        return json.loads(self.summary_json)


def _parse_summary(summary_json: str, run_id: str, path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(summary_json)
    except ValueError as exc:
        raise CorruptRunError(path, f"its moebench summary is not valid JSON ({exc})") from None
    if not isinstance(summary, dict):
        raise CorruptRunError(path, "its moebench summary is not a JSON object")
    if summary.get("run_id") != run_id:
        raise CorruptRunError(path, f"its summary names run {summary.get('run_id')!r}, "
                              f"not {run_id!r}")
    return summary


def verify_run_file(path: str | os.PathLike) -> RunRecord:
    """Read and verify one run file.

    Checks that ``path`` is a regular, readable parquet file with moebench
    metadata, that its summary is a JSON object naming the run of the file name,
    that the checkpoint columns are all there, and, when the file carries a
    checksum (every file written since checksums exist), that it matches.

    Raises
    ------
    CorruptRunError
        (a ValueError) naming the path and the reason.
    """
    path = Path(path)
    run_id = path.name[: -len(".parquet")] if path.name.endswith(".parquet") else path.stem
    if not path.is_file():
        raise CorruptRunError(path, "not a regular file" if path.exists() else "missing")
    try:
        table = pq.read_table(path)
    except PermissionError:
        raise CorruptRunError(path, "not readable (permission denied)") from None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, it is damaged
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptRunError(path, f"not a readable parquet file ({first})") from None
    meta = table.schema.metadata or {}
    if SUMMARY_KEY not in meta:
        raise CorruptRunError(path, "a parquet file without moebench metadata (not a run file)")
    try:
        summary_json = meta[SUMMARY_KEY].decode()
    except UnicodeDecodeError:
        raise CorruptRunError(path, "its moebench summary is not UTF-8") from None
    _parse_summary(summary_json, run_id, path)
    thinning = None
    if THINNING_KEY in meta:
        try:
            thinning = _parse_thinning(json.loads(meta[THINNING_KEY]))
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise CorruptRunError(path, f"bad thinning record ({exc})") from None
    try:
        frame = table.to_pandas()
        checksum = run_checksum(summary_json, frame, thinning)
    except Exception as exc:  # noqa: BLE001 - a damaged table may raise anything
        raise CorruptRunError(path, f"bad checkpoint table ({exc})") from None
    stored = meta.get(CHECKSUM_KEY)
    if stored is not None and stored.decode(errors="replace") != checksum:
        raise CorruptRunError(path, "checksum mismatch: its content was altered after it "
                              "was written")
    return RunRecord(run_id, summary_json, frame, checksum, "file", thinning)


def read_run_summary(path: str | os.PathLike) -> dict[str, Any]:
    """The summary dict stored in a run file (verified; raises CorruptRunError)."""
    return verify_run_file(path).summary


def read_run(path: str | os.PathLike) -> tuple[dict[str, Any], pd.DataFrame]:
    """(summary, checkpoints frame) of one run file (verified; raises CorruptRunError)."""
    rec = verify_run_file(path)
    return rec.summary, rec.checkpoints


def quarantine(path: str | os.PathLike, reason: str) -> Path:
    """Move a damaged file of ``runs/`` into ``runs/.quarantine/`` and say so in one line.

    The move is one :func:`os.replace` (atomic; never a delete). A name already in
    the quarantine gets a ``.1``, ``.2``, ... suffix. Returns the new path.
    """
    path = Path(path)
    qdir = path.parent / QUARANTINE_DIR
    try:
        qdir.mkdir(exist_ok=True)
    except OSError:
        pass  # reported by the move below
    dest = qdir / path.name
    i = 0
    while dest.exists() or dest.is_symlink():
        i += 1
        dest = qdir / f"{path.name}.{i}"
    try:
        os.replace(path, dest)
    except OSError as exc:  # e.g. a read-only folder: leave it, still count it as not run
        warn(f"{path}: {reason}; left in place, could not move it to {qdir} ({exc}) "
             "(its run counts as not run)")
        return path
    warn(f"{path}: {reason}; moved to {dest} (its run counts as not run)")
    return dest


def _run_file_entries(out: str | os.PathLike) -> dict[str, Path]:
    """Run id -> path of every ``runs/*.parquet`` entry (temporary files excluded)."""
    d = runs_dir(out)
    if d.exists() and not d.is_dir():
        raise ValueError(f"{d} is not a folder; move it away (results folders keep their run "
                         f"files in {RUNS_DIR}/)")
    if not d.is_dir():
        return {}
    return {e.name[: -len(".parquet")]: Path(e.path) for e in os.scandir(d)
            if e.name.endswith(".parquet") and not e.name.startswith(TMP_PREFIX)
            and not e.name.startswith(".")}


def finished_run_ids(out: str | os.PathLike) -> set[str]:
    """Ids of the run files in place (by name only; temporary files never count).

    Cheap (one directory listing); :func:`stored_runs` verifies the files and also
    counts the runs of a packed folder.
    """
    return set(_run_file_entries(out))


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


# --------------------------------------------------------------------------- packed records
def is_packed(out: str | os.PathLike) -> bool:
    """Whether ``out`` is a packed results folder (holds ``records.parquet``)."""
    return (Path(out) / RECORDS_FILE).is_file()


def _damaged_pack(path: Path, reason: str) -> ValueError:
    return ValueError(f"{path} is damaged ({reason}), so the packed runs of {path.parent} "
                      f"cannot be read; restore it (e.g. `git checkout -- {path}`), or move "
                      f"{path.parent / RECORDS_FILE} away to treat the folder as unpacked")


def packed_run_ids(out: str | os.PathLike) -> set[str]:
    """Ids of the runs held by a packed folder (empty when it is not packed)."""
    path = Path(out) / RECORDS_FILE
    if not path.is_file():
        return set()
    try:
        return set(pq.read_table(path, columns=["run_id"]).column("run_id").to_pylist())
    except Exception as exc:  # noqa: BLE001 - a damaged table may raise anything
        raise _damaged_pack(path, str(exc).strip().splitlines()[0] if str(exc) else
                            type(exc).__name__) from None


def _read_packed(out: Path, skip: Iterable[str] = ()) -> dict[str, RunRecord]:
    """Verified records of a packed folder (those in ``skip`` are not read)."""
    rpath, cpath = out / RECORDS_FILE, out / "checkpoints.parquet"
    if not rpath.is_file():
        return {}
    try:
        records = pq.read_table(rpath).to_pandas()
        if not {"run_id", "summary", "checksum"} <= set(records.columns):
            raise KeyError("columns run_id, summary, checksum")
    except Exception as exc:  # noqa: BLE001 - a damaged table may raise anything
        raise _damaged_pack(rpath, str(exc).strip().splitlines()[0]) from None
    skip = set(skip)
    records = records[~records["run_id"].isin(skip)]
    if records.empty:
        return {}
    try:
        ck = pq.read_table(cpath, columns=["run_id", *CHECKPOINT_COLUMNS]).to_pandas()
    except Exception as exc:  # noqa: BLE001 - a damaged table may raise anything
        raise _damaged_pack(cpath, str(exc).strip().splitlines()[0] if str(exc) else
                            "missing") from None
    ck = ck[ck["run_id"].isin(set(records["run_id"]))]
    groups = ck.groupby("run_id", sort=False).indices
    empty = _checkpoint_frame([])
    thinned = "thin_checkpoints" in records.columns
    thin_n = records["thin_checkpoints"] if thinned else pd.Series(0, index=records.index)
    full = records["checkpoint_rows_full"] if thinned else pd.Series(0, index=records.index)
    out_records: dict[str, RunRecord] = {}
    for rid, summary_json, checksum, n, rows in zip(records["run_id"], records["summary"],
                                                    records["checksum"], thin_n, full,
                                                    strict=True):
        idx = groups.get(rid)
        frame = empty.copy() if idx is None else \
            ck.iloc[idx][list(CHECKPOINT_COLUMNS)].reset_index(drop=True)
        where = Path(f"{rpath}[{rid}]")
        try:
            _parse_summary(summary_json, rid, where)
            thinning = None if not n else _parse_thinning(
                {"thin_checkpoints": int(n), "checkpoint_rows_full": int(rows)})
            ok = run_checksum(summary_json, frame, thinning) == checksum
        except (ValueError, TypeError) as exc:
            warn(f"{where}: {exc}; excluded (its run counts as not run)")
            continue
        if not ok:
            warn(f"{where}: checksum mismatch between records.parquet and checkpoints.parquet; "
                 "excluded (its run counts as not run)")
            continue
        out_records[rid] = RunRecord(rid, summary_json, frame, checksum, "packed", thinning)
    return out_records


def stored_runs(out: str | os.PathLike, run_ids: Iterable[str] | None = None
                ) -> dict[str, RunRecord]:
    """Every verified run of a results folder: packed records and run files.

    Run files are read and verified; one that fails is moved to
    ``runs/.quarantine/`` with a one-line warning and left out (its cell re-runs
    on resume). A run file replaces a packed record of the same run (a re-run).

    Parameters
    ----------
    out : path
        The results directory.
    run_ids : iterable of str, optional
        Only the run files of these runs (a packed folder's records always count).

    Returns
    -------
    dict
        run id -> :class:`RunRecord`, packed records first, then run files, in
        sorted order of run id within each.
    """
    out = Path(out)
    entries = _run_file_entries(out)
    if run_ids is not None:
        wanted = set(run_ids)
        entries = {r: p for r, p in entries.items() if r in wanted}
    loose: dict[str, RunRecord] = {}
    for rid in sorted(entries):
        try:
            loose[rid] = verify_run_file(entries[rid])
        except CorruptRunError as exc:
            quarantine(exc.path, exc.reason)
    records = _read_packed(out, skip=loose)
    records.update(loose)
    return records


def stored_summaries(out: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """run id -> summary of every verified finished run (what a resume skips)."""
    return {rid: rec.summary for rid, rec in stored_runs(out).items()}


# --------------------------------------------------------------------------- tables
def _write_frame(frame: pd.DataFrame, path: Path, metadata: dict[bytes, bytes] | None = None
                 ) -> None:
    buf = io.BytesIO()
    if path.suffix == ".csv":
        buf.write(frame.to_csv(index=False).encode())
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        split = [c for c in _FLOAT_CHECKPOINT_COLUMNS
                 if c in table.column_names and pa.types.is_float64(table.schema.field(c).type)]
        pq.write_table(table, buf, compression="zstd", compression_level=ZSTD_LEVEL,
                       use_dictionary=[c for c in table.column_names if c not in split],
                       column_encoding={c: "BYTE_STREAM_SPLIT" for c in split} or None)
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


#: summary keys kept in the run records only, not in the summary and checkpoint tables:
#: each run's fitted parameters (JSON, about 8.7 bytes per number compressed) would be
#: stored three times; :func:`moebench.sweep.rerun.with_parameters` adds them to a table
PARAMETERS_KEY = "fitted_parameters"
RECORD_ONLY_KEYS = (PARAMETERS_KEY,)


def build_tables(records: Iterable[RunRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, checkpoints) tables of ``records``, in their order (less
    :data:`RECORD_ONLY_KEYS`).

    When a run's checkpoints are thinned, the summary table has the column
    ``checkpoints_thinned`` (:data:`THINNED_COLUMN`: each run's N, 0 for a complete
    run), joined onto the checkpoint rows like the other summary columns.
    """
    summaries, frames, thin = [], [], []
    for rec in records:
        summaries.append({key: value for key, value in rec.summary.items()
                          if key not in RECORD_ONLY_KEYS})
        thin.append(rec.thinning["thin_checkpoints"] if rec.thinning else 0)
        ck = rec.checkpoints.copy()
        ck.insert(0, "run_id", rec.run_id)
        frames.append(ck)
    summary_df = _uniform_types(pd.DataFrame(summaries))
    if any(thin):  # only folders with a thinned run get the column
        summary_df[THINNED_COLUMN] = pd.Series(thin, index=summary_df.index, dtype="int64")
    if frames:
        ck_df = pd.concat(frames, ignore_index=True)
    else:
        ck_df = _checkpoint_frame([])
        ck_df.insert(0, "run_id", pd.Series([], dtype=str))
    if not summary_df.empty:
        join = [c for c in summary_df.columns if c not in CHECKPOINT_JOIN_EXCLUDE
                and c not in ck_df.columns or c == "run_id"]
        ck_df = ck_df.merge(summary_df[join], on="run_id", how="left")
    return summary_df, ck_df


def _records_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    recs = list(records)
    frame = pd.DataFrame({"run_id": pd.Series([r.run_id for r in recs], dtype=object),
                          "summary": pd.Series([r.summary_json for r in recs], dtype=object),
                          "checksum": pd.Series([r.checksum for r in recs], dtype=object),
                          "checkpoint_rows": pd.Series([len(r.checkpoints) for r in recs],
                                                       dtype="int64")})
    if any(r.thinning for r in recs):  # complete folders keep the format-1 columns
        frame["thin_checkpoints"] = pd.Series(
            [r.thinning["thin_checkpoints"] if r.thinning else 0 for r in recs], dtype="int64")
        frame["checkpoint_rows_full"] = pd.Series(
            [r.thinning["checkpoint_rows_full"] if r.thinning else len(r.checkpoints)
             for r in recs], dtype="int64")
    return frame


def _ordered(records: dict[str, RunRecord], run_ids: list[str] | None) -> list[RunRecord]:
    """Records in ``run_ids`` order (then the remaining ones, sorted), or sorted."""
    if run_ids is None:
        return [records[r] for r in sorted(records)]
    first = [records[r] for r in dict.fromkeys(run_ids) if r in records]
    seen = {r.run_id for r in first}
    return first + [records[r] for r in sorted(records) if r not in seen]


def _existing_order(out: Path) -> list[str] | None:
    """The run order of the folder's current tables (summary.parquet, else records.parquet).

    Re-consolidating or packing keeps it, so tables (and reports whose ties follow
    row order) come out the same.
    """
    for name in ("summary.parquet", RECORDS_FILE):
        try:
            return pq.read_table(out / name, columns=["run_id"]).column("run_id").to_pylist()
        except (OSError, pa.ArrowException, KeyError):
            continue
    return None


def _pack_metadata(records: list[RunRecord], checkpoint_rows: int) -> dict[str, Any]:
    """The ``moebench_pack`` metadata of records.parquet (see :func:`pack_metadata`)."""
    meta: dict[str, Any] = {"format": PACK_FORMAT, "runs": len(records),
                            "checkpoint_rows": checkpoint_rows}
    thinned = [r.thinning for r in records if r.thinning]
    if thinned:
        meta["format"] = PACK_FORMAT_THINNED
        meta["thinned_runs"] = len(thinned)
        meta["thin_checkpoints"] = sorted({t["thin_checkpoints"] for t in thinned})
        meta["checkpoint_rows_full"] = checkpoint_rows + sum(
            t["checkpoint_rows_full"] for t in thinned) - sum(
            len(r.checkpoints) for r in records if r.thinning)
    return meta


def pack_metadata(out: str | os.PathLike) -> dict[str, Any]:
    """The packing record of a packed folder (``{}`` when it is not packed).

    Keys: ``format`` (1; 2 when some run's checkpoints are thinned), ``runs``,
    ``checkpoint_rows``; and, for a folder with thinned runs, ``thinned_runs``,
    ``thin_checkpoints`` (the sorted N values used) and ``checkpoint_rows_full`` (the
    rows before thinning).

    Raises
    ------
    ValueError
        When records.parquet cannot be read.
    """
    path = Path(out) / RECORDS_FILE
    if not path.is_file():
        return {}
    try:
        raw = (pq.read_schema(path).metadata or {}).get(PACK_KEY)
        return json.loads(raw) if raw else {}
    except Exception as exc:  # noqa: BLE001 - a damaged table may raise anything
        raise _damaged_pack(path, str(exc).strip().splitlines()[0] if str(exc) else
                            type(exc).__name__) from None


def _write_tables(out: Path, records: list[RunRecord], summary_df: pd.DataFrame,
                  ck_df: pd.DataFrame, csv: bool, packed: bool) -> None:
    # checkpoints first, records second: a crash in between leaves run files that
    # still override any record whose rows changed (run files go only after a pack)
    _write_frame(ck_df, out / "checkpoints.parquet")
    if packed:
        meta = {PACK_KEY: json.dumps(_pack_metadata(records, len(ck_df))).encode()}
        _write_frame(_records_frame(records), out / RECORDS_FILE, meta)
    _write_frame(summary_df, out / "summary.parquet")
    if csv:
        _write_frame(summary_df, out / "summary.csv")
        _write_frame(ck_df, out / "checkpoints.csv")


def consolidate(out: str | os.PathLike, run_ids: list[str] | None = None, csv: bool = False
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gather the stored runs into ``summary.parquet`` and ``checkpoints.parquet`` (and CSVs).

    Every run file is verified; a damaged one is quarantined with a warning and
    left out, so one bad file never stops consolidation. In a packed folder the
    packed runs are always kept and ``records.parquet`` is rewritten with the new
    run files merged in (the run files stay until the next :func:`pack`).

    Parameters
    ----------
    out : path
        The results directory.
    run_ids : list of str, optional
        Only these run files (those of a config); default every run file.
    csv : bool
        Also write ``summary.csv`` and ``checkpoints.csv``.

    Returns
    -------
    summary, checkpoints : DataFrame
    """
    out = Path(out)
    records = _ordered(stored_runs(out, run_ids), run_ids)
    summary_df, ck_df = build_tables(records)
    _write_tables(out, records, summary_df, ck_df, csv, packed=is_packed(out))
    return summary_df, ck_df


# --------------------------------------------------------------------------- thinning
def _parse_thinning(value: Any) -> dict[str, int]:
    """A thinning record as stored (JSON object with two positive integers), checked."""
    if not isinstance(value, dict) or set(value) != {"thin_checkpoints", "checkpoint_rows_full"}:
        raise ValueError("expected an object with thin_checkpoints and checkpoint_rows_full")
    out = {}
    for key in ("checkpoint_rows_full", "thin_checkpoints"):
        v = value[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{key} must be a non-negative integer; got {v!r}")
        out[key] = int(v)
    return out


def check_thin_checkpoints(n: Any) -> int:
    """``n`` as a valid ``thin_checkpoints`` value (an integer in :data:`THIN_RANGE`).

    Raises
    ------
    ValueError
        Naming the option (``thin_checkpoints``, ``--thin-checkpoints`` on the command
        line), the bad value and the valid range.
    """
    low, high = THIN_RANGE
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not low <= n <= high:
        raise ValueError(f"thin_checkpoints (--thin-checkpoints) must be an integer from {low} "
                         f"to {high} (about how many checkpoints to keep per run segment); "
                         f"got {n!r}")
    return int(n)


def checkpoint_segments(phase: Sequence[Any], iteration: Sequence[int]) -> np.ndarray:
    """The segment of each checkpoint row: a new one where the phase changes or the
    iteration goes down (a restart), so iterations never decrease within a segment.

    Parameters
    ----------
    phase, iteration : sequence
        One entry per checkpoint, in recorded order.

    Returns
    -------
    ndarray of int64
        0, 0, ..., 1, 1, ... (empty for no rows).
    """
    ph = np.asarray(phase, dtype=object)
    it = np.asarray(iteration, dtype=np.int64)
    if len(it) == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.zeros(len(it), dtype=bool)
    new[1:] = (ph[1:] != ph[:-1]) | (it[1:] < it[:-1])
    return np.cumsum(new).astype(np.int64)


def thin_checkpoint_rows(phase: Sequence[Any], iteration: Sequence[int], n: int) -> np.ndarray:
    """Positions of the checkpoint rows a thinned run keeps (sorted, recorded order).

    Within each segment (:func:`checkpoint_segments`: a phase, or one restart of it)
    of more than ``n`` rows, with iterations from ``i0`` to ``i1``, the kept rows are
    the segment's first and last row and, for each offset ``o`` of the geometric
    grid ``round(geomspace(1, i1 - i0 + 1, n)) - 1``, the first row whose iteration
    is at least ``i0 + o``. A segment of at most ``n`` rows is kept whole. So the
    first and last checkpoint of the run and of every phase and restart are always
    kept, early iterations densely and late ones about ``n`` per decade span, and
    thinning a thinned run again with the same ``n`` keeps every row.

    Parameters
    ----------
    phase, iteration : sequence
        One entry per checkpoint, in recorded order.
    n : int
        About how many rows to keep per segment (see :func:`check_thin_checkpoints`).

    Returns
    -------
    ndarray of int64
    """
    n = check_thin_checkpoints(n)
    it = np.asarray(iteration, dtype=np.int64)
    seg = checkpoint_segments(phase, it)
    keep: list[np.ndarray] = []
    bounds = np.flatnonzero(np.diff(seg, prepend=-1, append=seg[-1] + 1 if len(seg) else 0))
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b - a <= n:
            keep.append(np.arange(a, b))
            continue
        its = it[a:b]
        span = int(its[-1] - its[0]) + 1
        offsets = np.unique(np.clip(np.rint(np.geomspace(1, span, n)), 1, span).astype(np.int64)
                            ) - 1
        pos = a + np.searchsorted(its, its[0] + offsets, side="left")
        keep.append(np.unique(np.concatenate([[a, b - 1], pos[pos < b]])))
    return np.concatenate(keep).astype(np.int64) if keep else np.zeros(0, dtype=np.int64)


def thin_record(record: RunRecord, n: int) -> RunRecord:
    """``record`` with its checkpoints thinned to :func:`thin_checkpoint_rows` (a new record).

    The summary is kept byte-exact; the checksum is recomputed over the kept rows and
    the thinning record. A run already thinned is returned as it is (whatever ``n``),
    and so is a run that loses no row (it stays a complete run).
    """
    n = check_thin_checkpoints(n)
    if record.thinning is not None:
        return record
    ck = record.checkpoints
    rows = thin_checkpoint_rows(ck["phase"].to_numpy(), ck["iteration"].to_numpy(), n)
    if len(rows) == len(ck):
        return record
    frame = ck.iloc[rows].reset_index(drop=True)
    thinning = {"thin_checkpoints": n, "checkpoint_rows_full": len(ck)}
    return RunRecord(record.run_id, record.summary_json, frame,
                     run_checksum(record.summary_json, frame, thinning), record.source,
                     thinning)


# --------------------------------------------------------------------------- pack / unpack
@dataclass
class PackOutcome:
    """What :func:`pack` did."""

    out: Path
    runs: int
    checkpoint_rows: int
    removed: int
    bytes_before: int
    bytes_after: int
    thinned: int = 0
    checkpoint_rows_dropped: int = 0


def _tree_size(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def pack(out: str | os.PathLike, thin_checkpoints: int | None = None) -> PackOutcome:
    """Pack a results folder: every run into ``records.parquet`` + ``checkpoints.parquet``.

    The run files are verified (damaged ones are quarantined), the tables are
    written (zstd), read back and checked to hold every run with its exact summary
    and checkpoint rows, and only then are the run files deleted. ``runs/`` is
    removed when nothing else is left in it (a non-empty quarantine stays).
    Packing a packed folder merges the run files written since. The row order of the
    current summary.parquet is kept (reports list ties in row order).

    Parameters
    ----------
    out : path
        The results directory.
    thin_checkpoints : int, optional
        Thin each run's checkpoints to about this many per segment
        (:func:`thin_checkpoint_rows`; an integer in :data:`THIN_RANGE`). Summaries
        are kept exactly; each thinned run records its N and its full row count
        (:class:`RunRecord`), and records.parquet's metadata says so
        (:func:`pack_metadata`). Runs thinned before are left as they are. The
        dropped rows are gone for good once the run files are deleted. Default: keep
        every checkpoint.

    Raises
    ------
    FileNotFoundError
        When ``out`` is not a results directory or holds no runs.
    ValueError
        When ``thin_checkpoints`` is out of range (checked before anything is
        touched), or the written tables do not read back equal (nothing is deleted
        then).
    """
    if thin_checkpoints is not None:
        thin_checkpoints = check_thin_checkpoints(thin_checkpoints)
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"no results directory {str(out)!r}")
    clean_temporaries(out)
    entries = _run_file_entries(out)
    before = _tree_size([*entries.values(), out / "summary.parquet", out / "checkpoints.parquet",
                         out / RECORDS_FILE])
    store = stored_runs(out)
    if not store:
        raise FileNotFoundError(f"{out} holds no runs to pack (no runs/*.parquet and no "
                                f"{RECORDS_FILE})")
    records = _ordered(store, _existing_order(out))
    thinned = dropped = 0
    if thin_checkpoints is not None:
        thin = [thin_record(rec, thin_checkpoints) for rec in records]
        for old, new in zip(records, thin, strict=True):
            if new is not old:
                thinned += 1
                dropped += len(old.checkpoints) - len(new.checkpoints)
        records = thin
    summary_df, ck_df = build_tables(records)
    _write_tables(out, records, summary_df, ck_df, csv=False, packed=True)
    back = _read_packed(out)
    for rec in records:
        got = back.get(rec.run_id)
        if got is None or got.summary_json != rec.summary_json or \
                got.thinning != rec.thinning or \
                not got.checkpoints.equals(rec.checkpoints.reset_index(drop=True)):
            raise ValueError(f"pack {out}: run {rec.run_id} did not read back equal from "
                             f"{out / RECORDS_FILE}; no run file was deleted")
    removed = 0
    for rid, path in _run_file_entries(out).items():
        if rid in back and back[rid].source == "packed" and path.is_file():
            path.unlink()
            removed += 1
    d = runs_dir(out)
    qdir = quarantine_dir(out)
    if qdir.is_dir() and not any(qdir.iterdir()):
        qdir.rmdir()
    if d.is_dir() and not any(d.iterdir()):
        d.rmdir()
    after = _tree_size([out / "summary.parquet", out / "checkpoints.parquet", out / RECORDS_FILE,
                        *_run_file_entries(out).values()])
    return PackOutcome(out, len(records), len(ck_df), removed, before, after, thinned, dropped)


def unpack(out: str | os.PathLike, force: bool = False) -> int:
    """Write ``runs/<run_id>.parquet`` for every packed run and remove ``records.parquet``.

    Each run file gets the summary exactly as packed and the same checkpoint rows
    (so :func:`read_run` gives back equal summaries and frames); a thinned run's file
    carries its thinning record (metadata key ``moebench_thinning``) and a checksum
    computed over the rows it holds, so it verifies like any run file. An existing run
    file is kept unless ``force``. ``summary.parquet`` and ``checkpoints.parquet``
    stay (they are the consolidated tables of an unpacked folder too). Returns the
    number of run files written.

    Raises
    ------
    ValueError
        When ``out`` is not a packed folder.
    """
    out = Path(out)
    if not is_packed(out):
        raise ValueError(f"{out} is not a packed results folder (no {RECORDS_FILE}); "
                         "valid input: a folder written by `moebench pack`")
    existing = set() if force else finished_run_ids(out)
    written = 0
    for rid, rec in _read_packed(out).items():
        if rid in existing:
            continue
        atomic_write_bytes(run_path(out, rid), _run_file_bytes(rec.summary_json.encode(),
                                                               rec.checkpoints, rec.thinning))
        written += 1
    (out / RECORDS_FILE).unlink()
    for name in ("summary.parquet", "checkpoints.parquet"):
        if (out / name).is_file():  # still up to date: not older than the run files
            os.utime(out / name)
    return written


# --------------------------------------------------------------------------- loading
REQUIRED_SUMMARY_COLUMNS = ("run_id", "status", "label")


def _stale_reason(path: Path, summary: pd.DataFrame) -> str | None:
    """Why ``summary.parquet`` no longer matches the stored runs, or None."""
    entries = _run_file_entries(path)
    stored = set(entries) | packed_run_ids(path)
    listed = set(summary["run_id"]) if "run_id" in summary.columns else set()
    new = stored - listed
    if new:
        return f"it lacks {len(new)} stored run(s)"
    gone = listed - stored
    if gone and stored:
        return f"it lists {len(gone)} run(s) no longer stored"
    stamp = (path / "summary.parquet").stat().st_mtime_ns
    newer = 0
    for p in entries.values():
        try:
            newer += p.stat().st_mtime_ns > stamp
        except OSError:
            newer += 1
    if newer:
        return f"it is older than {newer} run file(s)"
    return None


def load_results(results: str | os.PathLike, require_runs: bool = False
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, checkpoints) of a results directory (or of its summary.parquet).

    Consolidates the stored runs when the directory has no tables yet, when a
    table cannot be read, or when ``summary.parquet`` is stale (older than a run
    file, or missing a stored run): each case is said in one warning line. Damaged
    run files are quarantined and left out, never fatal.

    Parameters
    ----------
    results : path
        A results directory, or its ``summary.parquet``.
    require_runs : bool
        Raise ValueError when there is no run at all (figures need runs).

    Raises
    ------
    FileNotFoundError
        When ``results`` is not a results directory or holds no results.
    ValueError
        When ``require_runs`` and the results hold no run, or a packed table is
        damaged.
    """
    path = Path(results)
    if path.is_file() and path.suffix == ".parquet":
        path = path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"no results directory {str(results)!r}")
    s, c = path / "summary.parquet", path / "checkpoints.parquet"
    summary = checkpoints = None
    if s.is_file() and c.is_file():
        try:
            summary, checkpoints = pd.read_parquet(s), pd.read_parquet(c)
            missing = [col for col in REQUIRED_SUMMARY_COLUMNS if col not in summary.columns]
            if missing and not summary.empty:
                raise ValueError(f"{s} lacks the column(s) {', '.join(missing)}")
            if not missing and "run_id" not in checkpoints.columns:
                raise ValueError(f"{c} lacks the column run_id")
        except Exception as exc:  # noqa: BLE001 - a damaged table may raise anything
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            if not (finished_run_ids(path) or is_packed(path)):
                raise ValueError(f"{s.name if s.name in first else s}: {first}; and no run "
                                 f"files to rebuild it from") from None
            warn(f"{path}: {first}; rebuilding the tables from the stored runs")
            summary = None
        else:
            reason = _stale_reason(path, summary)
            if reason:
                warn(f"{s} is stale ({reason}); re-consolidating it from the stored runs "
                     f"(`moebench run CONFIG --out {path}` does the same)")
                summary = None
    if summary is None or checkpoints is None:
        if not (finished_run_ids(path) or is_packed(path)):
            raise FileNotFoundError(
                f"{path} holds no results (no summary.parquet and no runs/*.parquet); "
                f"run `moebench run CONFIG --out {path}` first")
        records = _ordered(stored_runs(path), _existing_order(path))
        summary, checkpoints = build_tables(records)
        try:
            _write_tables(path, records, summary, checkpoints, csv=False,
                          packed=is_packed(path))
        except OSError as exc:
            warn(f"could not rewrite the tables of {path} ({exc}); using them in memory")
    if require_runs and (summary.empty or "status" not in summary.columns):
        raise ValueError(f"{path} holds no runs (its summary is empty): nothing to draw; "
                         f"run `moebench run CONFIG --out {path}` first")
    return summary, checkpoints
