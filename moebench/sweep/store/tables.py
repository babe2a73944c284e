"""The consolidated tables: ``summary.parquet`` and ``checkpoints.parquet`` built from records.

Both tables carry the store schema (metadata key ``moebench_schema``) and a record of
what they summarise (key ``moebench_tables``, JSON): ``runs``, ``records`` (the
:func:`moebench.sweep.store.records.records_digest` of the run ids and checksums of the
records they were built from) and ``content`` (:func:`frame_digest` of the table itself).
:func:`tables_disagreement` checks a table against both, so a hand-edited table, or one
that no longer summarises the stored records, is found and rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from moebench.io import atomic_write_bytes
from moebench.sweep.store.packed import (
    PACK_KEY,
    RECORDS_FILE,
    is_packed,
    packed_metadata,
    records_frame,
)
from moebench.sweep.store.records import (
    SCHEMA_KEY,
    STORE_SCHEMA,
    RunRecord,
    checkpoint_frame,
    records_digest,
    schema_of,
)
from moebench.sweep.store.stored import stored_runs

#: metadata key of the tables' record (schema 2): runs, records digest, content digest
TABLES_KEY = b"moebench_tables"

#: summary-table column of a folder with thinned runs: the N of each run (0: complete)
THINNED_COLUMN = "checkpoints_thinned"
#: zstd level of the tables: 19 makes results/gridlock's checkpoints.parquet 13.7 MB instead of
#: 14.2 MB at level 9, for ~2 s more per 5e5 checkpoint rows
ZSTD_LEVEL = 19
#: float columns of the checkpoint table (stored byte-stream-split: they compress better)
_FLOAT_CHECKPOINT_COLUMNS = ("time", "log_likelihood", "expert_error", "gating_error")
#: summary columns joined onto every checkpoint row of the long table
CHECKPOINT_JOIN_EXCLUDE = ("expert_error", "expert_max_angle", "gating_error", "message",
                           "warnings", "train_log_likelihood", "test_log_likelihood", "test_mse")


def frame_digest(frame: pd.DataFrame) -> str:
    """``"sha256:<hex>"`` of a table's column names, dtypes and values (row order counts).

    Values are hashed with :func:`pandas.util.hash_pandas_object` (fixed key), so the
    digest of a table read back from parquet equals the one taken when it was written.
    """
    h = hashlib.sha256(b"moebench-table-v1\0")
    h.update(len(frame).to_bytes(8, "little"))
    for col in frame.columns:
        h.update(f"{col}\0{frame[col].dtype}\0".encode())
        h.update(pd.util.hash_pandas_object(frame[col], index=False).to_numpy().tobytes())
    return "sha256:" + h.hexdigest()


def _write_frame(frame: pd.DataFrame, path: Path, metadata: dict[bytes, bytes] | None = None,
                 record: dict[str, Any] | None = None) -> None:
    """Write one table atomically (zstd parquet, or CSV by suffix); ``record`` (the tables'
    record, less the content digest) makes it a consolidated table of the current schema."""
    buf = io.BytesIO()
    if path.suffix == ".csv":
        buf.write(frame.to_csv(index=False).encode())
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        metadata = dict(metadata or {})
        if record is not None:
            # the digest of the frame as parquet gives it back (arrow's types)
            content = frame_digest(table.to_pandas())
            metadata[TABLES_KEY] = json.dumps({**record, "content": content}).encode()
        if metadata:
            metadata[SCHEMA_KEY] = str(STORE_SCHEMA).encode()
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
        ck_df = checkpoint_frame([])
        ck_df.insert(0, "run_id", pd.Series([], dtype=str))
    if not summary_df.empty:
        join = [c for c in summary_df.columns if c not in CHECKPOINT_JOIN_EXCLUDE
                and c not in ck_df.columns or c == "run_id"]
        ck_df = ck_df.merge(summary_df[join], on="run_id", how="left")
    return summary_df, ck_df


def ordered_records(records: dict[str, RunRecord], run_ids: list[str] | None) -> list[RunRecord]:
    """Records in ``run_ids`` order (then the remaining ones, sorted), or sorted."""
    if run_ids is None:
        return [records[r] for r in sorted(records)]
    first = [records[r] for r in dict.fromkeys(run_ids) if r in records]
    seen = {r.run_id for r in first}
    return first + [records[r] for r in sorted(records) if r not in seen]


def existing_order(out: Path) -> list[str] | None:
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


def write_tables(out: Path, records: list[RunRecord], summary_df: pd.DataFrame,
                 ck_df: pd.DataFrame, csv: bool, packed: bool) -> None:
    """Write the tables of ``records`` (and records.parquet when ``packed``), atomically each.

    The tables carry the store schema and their record (runs, records digest, content
    digest; see the module docstring).
    """
    # checkpoints first, records second: a crash in between leaves run files that
    # still override any record whose rows changed (run files go only after a pack)
    record = {"runs": len(records),
              "records": records_digest({r.run_id: r.checksum for r in records})}
    _write_frame(ck_df, out / "checkpoints.parquet", record=record)
    if packed:
        meta = {PACK_KEY: json.dumps(packed_metadata(records, len(ck_df))).encode()}
        _write_frame(records_frame(records), out / RECORDS_FILE, meta)
    _write_frame(summary_df, out / "summary.parquet", record=record)
    if csv:
        _write_frame(summary_df, out / "summary.csv")
        _write_frame(ck_df, out / "checkpoints.csv")


def table_record(path: Path) -> tuple[int, dict[str, Any] | None]:
    """(store schema, tables' record or None) of a consolidated table, from its footer.

    Raises
    ------
    StoreSchemaError
        When the table was written by a newer store schema.
    """
    meta = pq.read_schema(path).metadata or {}
    schema = schema_of(meta.get(SCHEMA_KEY), path)
    try:
        record = json.loads(meta[TABLES_KEY]) if TABLES_KEY in meta else None
    except ValueError:
        record = None
    return schema, record if isinstance(record, dict) else None


def tables_disagreement(out: Path, summary: pd.DataFrame, checkpoints: pd.DataFrame,
                        stored: dict[str, str] | None) -> tuple[str, bool] | None:
    """Why the schema-2 tables of ``out`` do not summarise the stored records, or None.

    Parameters
    ----------
    out : Path
        The results directory.
    summary, checkpoints : DataFrame
        The tables as read.
    stored : dict or None
        run id -> checksum of the stored records
        (:func:`moebench.sweep.store.stored.stored_checksums`); None when the folder
        stores no records at all (neither records.parquet nor run files), so that the
        tables are all there is and only their own digests are checked.

    Returns
    -------
    (reason, set_aside) or None
        ``set_aside`` is True when the tables hold something the records do not (a table
        altered after it was written, or runs no longer stored): they are kept in the
        quarantine before being rebuilt. A table that only lacks new runs is not.
    """
    digests = {}
    for name, frame in (("summary.parquet", summary), ("checkpoints.parquet", checkpoints)):
        _, record = table_record(out / name)
        if record is None or not {"records", "content", "runs"} <= set(record):
            return f"{name} carries no record of what it summarises", True
        if frame_digest(frame) != record["content"]:
            return f"{name} was altered after it was written (its content digest differs)", True
        digests[name] = record["records"]
    if len(set(digests.values())) > 1:
        return "summary.parquet and checkpoints.parquet summarise different records", True
    if stored is None or digests["summary.parquet"] == records_digest(stored):
        return None
    listed = set(summary["run_id"]) if "run_id" in summary.columns else set()
    gone = listed - set(stored)
    if gone:
        return f"it lists {len(gone)} run(s) that are not stored", True
    new = set(stored) - listed
    if new:
        return f"it lacks {len(new)} stored run(s)", False
    return "stored runs were re-run or replaced since it was written", False


def consolidate(out: str | os.PathLike, run_ids: list[str] | None = None, csv: bool = False,
                verified: dict[str, RunRecord] | None = None
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
    verified : dict, optional
        Records this process verified already (a sweep's start,
        :attr:`moebench.sweep.runner.SweepOutcome.verified`): those whose files are
        unchanged are not read again (:func:`moebench.sweep.store.stored.stored_runs`).

    Returns
    -------
    summary, checkpoints : DataFrame

    Raises
    ------
    ValueError
        In a packed folder, when a packed record failed verification and could not be
        set aside (records.parquet is then left as it is).
    """
    out = Path(out)
    failed: dict[str, Path | None] = {}
    records = ordered_records(stored_runs(out, run_ids, verified, failed), run_ids)
    packed = is_packed(out)
    check_set_aside(out, failed, "consolidate")
    summary_df, ck_df = build_tables(records)
    write_tables(out, records, summary_df, ck_df, csv, packed=packed)
    return summary_df, ck_df


def check_set_aside(out: Path, failed: dict[str, Path | None], verb: str) -> None:
    """Refuse to rewrite records.parquet while a failed packed record is not set aside.

    Raises
    ------
    ValueError
        Naming the runs and the quarantine folder.
    """
    kept = sorted(rid for rid, where in failed.items() if where is None)
    if kept:
        raise ValueError(f"{verb} {out}: {len(kept)} packed record(s) failed verification and "
                         f"could not be set aside in {out / 'runs' / '.quarantine'} (e.g. "
                         f"{kept[0]}); records.parquet was left as it is: make the folder "
                         "writable and try again")
