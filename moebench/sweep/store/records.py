"""One run record: its summary JSON, its checkpoint frame, its checksum, its schema version.

A record is stored either as a run file (``runs/<run_id>.parquet``: the checkpoints as
rows, the summary JSON, the checksum, the thinning record and the schema version in the
parquet metadata) or as a packed record (a row of ``records.parquet`` over the run's rows
of ``checkpoints.parquet``). The checksum (:func:`run_checksum`) covers the summary, the
checkpoint values and the thinning record, never how they were stored.

Store schema versions (:data:`STORE_SCHEMA`): 1 is every file written before versions
existed (no ``moebench_schema`` key); 2 adds the version to run files, records.parquet and
the tables, and the tables' record digest (:mod:`moebench.sweep.store.tables`). Schema 1
is read as such (its layout is schema 2's less those keys); a newer schema than this code
knows is refused (:class:`StoreSchemaError`), never guessed at.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SUMMARY_KEY = b"moebench_summary"
CHECKSUM_KEY = b"moebench_checksum"
THINNING_KEY = b"moebench_thinning"
#: metadata key of the store schema version (run files, records.parquet, the tables)
SCHEMA_KEY = b"moebench_schema"
#: the store schema this code writes (see the module docstring)
STORE_SCHEMA = 2
#: the schema of files without a version (written before versions existed)
UNVERSIONED_SCHEMA = 1
CHECKPOINT_COLUMNS = ("phase", "iteration", "time", "log_likelihood", "expert_error",
                      "gating_error")
#: checkpoint columns that only some runs record (float64): a run's frame has one when any
#: of its records does, and its checksum covers it only then (so the files of runs without
#: it, older ones included, keep their checksums). ``passes``: passes over an on-disk X
#: so far (:class:`moebench.history.History`)
OPTIONAL_CHECKPOINT_COLUMNS = ("passes",)


# --------------------------------------------------------------------------- warnings
def warn(message: str) -> None:
    """One warning line on stderr (a damaged file, a stale table)."""
    print(f"moebench: warning: {message}", file=sys.stderr, flush=True)


class StoreSchemaError(ValueError):
    """A file written by a newer store schema than this code reads (never misread)."""

    def __init__(self, path: str | os.PathLike, schema: Any) -> None:
        self.path = Path(path)
        super().__init__(f"{path} was written by store schema {schema}; this moebench reads "
                         f"schemas {UNVERSIONED_SCHEMA} to {STORE_SCHEMA}: upgrade moebench to "
                         "read it")


def schema_of(raw: bytes | str | int | None, path: str | os.PathLike) -> int:
    """The store schema a stored version value names (:data:`UNVERSIONED_SCHEMA` when None).

    Raises
    ------
    StoreSchemaError
        When the value is not a known schema (newer, or not an integer).
    """
    if raw is None:
        return UNVERSIONED_SCHEMA
    try:
        schema = int(raw)
    except (TypeError, ValueError):
        raise StoreSchemaError(path, repr(raw)) from None
    if not UNVERSIONED_SCHEMA <= schema <= STORE_SCHEMA:
        raise StoreSchemaError(path, schema)
    return schema


#: folders already named in a schema note by this process (one line per folder)
_SCHEMA_NOTED: set[str] = set()


def note_old_schema(folder: str | os.PathLike, what: str, action: str | None = None) -> None:
    """Say once per folder and process, in one line, that ``folder`` holds ``what`` written
    by the unversioned schema 1, and what is done about it (``action``; default: read as
    such, rewritten at the current schema by the next pack or consolidation)."""
    key = str(Path(folder).resolve())
    if key in _SCHEMA_NOTED:
        return
    _SCHEMA_NOTED.add(key)
    action = action or (f"read as such (the same layout); the next `moebench pack` or "
                        f"`moebench run` rewrites it at schema {STORE_SCHEMA}")
    print(f"moebench: note: {folder}: {what} written by store schema {UNVERSIONED_SCHEMA} "
          f"(before schema versions): {action}", file=sys.stderr, flush=True)


class CorruptRunError(ValueError):
    """A run file (or packed record) that fails verification: unreadable, foreign or altered."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def checkpoint_frame(checkpoints: list[dict[str, Any]]) -> pd.DataFrame:
    cols: dict[str, list[Any]] = {c: [] for c in CHECKPOINT_COLUMNS}
    for rec in checkpoints:
        for c in CHECKPOINT_COLUMNS:
            cols[c].append(rec.get(c, "" if c == "phase" else np.nan))
    frame = pd.DataFrame(cols)
    frame["phase"] = frame["phase"].astype(str)
    frame["iteration"] = frame["iteration"].astype("int64")
    for c in CHECKPOINT_COLUMNS[2:]:
        frame[c] = frame[c].astype("float64")
    for c in OPTIONAL_CHECKPOINT_COLUMNS:
        if any(c in rec for rec in checkpoints):
            frame[c] = np.array([rec.get(c, np.nan) for rec in checkpoints], dtype="float64")
    return frame


def _thinning_json(thinning: dict[str, int]) -> bytes:
    return json.dumps({k: int(v) for k, v in thinning.items()}, sort_keys=True).encode()


def run_checksum(summary_json: str | bytes, frame: pd.DataFrame,
                 thinning: dict[str, int] | None = None) -> str:
    """``"sha256:<hex>"`` of a run's summary JSON and the canonical bytes of its checkpoints.

    The checkpoint part covers the row count and every column of
    ``CHECKPOINT_COLUMNS`` (phases as a JSON list, iterations as little-endian
    int64, the rest as little-endian float64), and each of
    ``OPTIONAL_CHECKPOINT_COLUMNS`` the frame has, so it does not depend on how the
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
    for c in OPTIONAL_CHECKPOINT_COLUMNS:  # only where the run records it
        if c in frame.columns:
            h.update(b"\0optional\0" + c.encode() + b"\0")
            h.update(frame[c].to_numpy(dtype="<f8").tobytes())
    h.update(b"\0summary\0")
    h.update(summary_json.encode() if isinstance(summary_json, str) else summary_json)
    if thinning is not None:
        h.update(b"\0thinning\0" + _thinning_json(thinning))
    return "sha256:" + h.hexdigest()


def run_file_bytes(summary_json: bytes, frame: pd.DataFrame,
                   thinning: dict[str, int] | None = None, checksum: str | None = None
                   ) -> bytes:
    """The bytes of a run file (current schema); ``checksum`` when already computed."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[SUMMARY_KEY] = summary_json
    if thinning is not None:
        meta[THINNING_KEY] = _thinning_json(thinning)
    meta[CHECKSUM_KEY] = (checksum or run_checksum(summary_json, frame, thinning)).encode()
    meta[SCHEMA_KEY] = str(STORE_SCHEMA).encode()
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


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
    source: str  # "file", "packed" or "memory" (made by make_record, not yet stored)
    thinning: dict[str, int] | None = None
    #: what the record was verified from: a run file's :func:`file_identity`, or those of
    #: records.parquet and checkpoints.parquet; None for a record made in memory
    identity: tuple[Any, ...] | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """The summary as a dict."""
        return json.loads(self.summary_json)


def make_record(summary: dict[str, Any], checkpoints: list[dict[str, Any]]) -> RunRecord:
    """The record of a finished run (its summary made JSON-safe, its checksum computed once)."""
    summary_json = json.dumps(jsonable(summary))
    frame = checkpoint_frame(checkpoints)
    return RunRecord(summary["run_id"], summary_json, frame, run_checksum(summary_json, frame),
                     "memory")


def file_identity(path: str | os.PathLike) -> tuple[int, int, int, int] | None:
    """(device, inode, mtime in ns, size) of a file, or None when there is none.

    A file replaced with :func:`os.replace` (a re-run, ``--force``) gets a new inode, so
    two identities taken before and after tell the new file from the old one.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


def records_digest(checksums: dict[str, str]) -> str:
    """``"sha256:<hex>"`` of the run ids and checksums of a set of records (order-free).

    The consolidated tables store it (:mod:`moebench.sweep.store.tables`), so a table that
    no longer summarises the stored records (a run added, lost or re-run) is detected from
    the records' checksums alone, without reading their checkpoints.
    """
    h = hashlib.sha256(b"moebench-records-v1\0")
    for rid in sorted(checksums):
        h.update(f"{rid}\0{checksums[rid]}\n".encode())
    return "sha256:" + h.hexdigest()


def parse_summary(summary_json: str, run_id: str, path: Path) -> dict[str, Any]:
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


def parse_thinning(value: Any) -> dict[str, int]:
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
