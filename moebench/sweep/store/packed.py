"""Packed records: ``records.parquet`` (summaries and checksums) over ``checkpoints.parquet``.

A packed folder (:func:`moebench.sweep.store.packing.pack`) holds every run in
``records.parquet`` (one row per run: its summary JSON exactly as its run file stored it,
its checksum, its row count and thinning record) and ``checkpoints.parquet`` (every
checkpoint row). Reading verifies every record against its checksum; one that fails is set
aside in ``runs/.quarantine/`` before it is left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from moebench.sweep.store.records import (
    CHECKPOINT_COLUMNS,
    OPTIONAL_CHECKPOINT_COLUMNS,
    SCHEMA_KEY,
    STORE_SCHEMA,
    RunRecord,
    checkpoint_frame,
    file_identity,
    note_old_schema,
    parse_summary,
    parse_thinning,
    run_checksum,
    run_file_bytes,
    schema_of,
    warn,
)
from moebench.sweep.store.runfiles import set_aside

PACK_KEY = b"moebench_pack"
#: format of a packed folder (2: some runs' checkpoints are thinned)
PACK_FORMAT = 1
PACK_FORMAT_THINNED = 2
RECORDS_FILE = "records.parquet"


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


def packed_checksums(out: str | os.PathLike) -> dict[str, str]:
    """run id -> checksum as records.parquet states them (not verified; empty when not
    packed)."""
    path = Path(out) / RECORDS_FILE
    if not path.is_file():
        return {}
    try:
        table = pq.read_table(path, columns=["run_id", "checksum"])
    except Exception as exc:  # noqa: BLE001 - a damaged table may raise anything
        raise _damaged_pack(path, str(exc).strip().splitlines()[0] if str(exc) else
                            type(exc).__name__) from None
    return dict(zip(table.column("run_id").to_pylist(), table.column("checksum").to_pylist(),
                    strict=True))


def read_packed(out: Path, skip: Iterable[str] = (),
                failed: dict[str, Path | None] | None = None) -> dict[str, RunRecord]:
    """Verified records of a packed folder (those in ``skip`` are not read).

    Each record's summary and its rows of checkpoints.parquet are checked against its
    checksum. A record that fails is set aside (:func:`set_aside`: written out as a run
    file, with its stored checksum, to ``runs/.quarantine/<run_id>.packed.parquet``, its
    reason beside it) and left out, so that nothing that rewrites records.parquet later
    can lose it. ``failed`` (when given) receives run id -> where it was set aside, None
    when the quarantine could not be written.

    Raises
    ------
    ValueError
        When records.parquet or checkpoints.parquet cannot be read (naming the file).
    StoreSchemaError
        When records.parquet was written by a newer store schema.
    """
    rpath, cpath = out / RECORDS_FILE, out / "checkpoints.parquet"
    if not rpath.is_file():
        return {}
    identity = (file_identity(rpath), file_identity(cpath))
    try:
        table = pq.read_table(rpath)
        records = table.to_pandas()
        if not {"run_id", "summary", "checksum"} <= set(records.columns):
            raise KeyError("columns run_id, summary, checksum")
    except Exception as exc:  # noqa: BLE001 - a damaged table may raise anything
        raise _damaged_pack(rpath, str(exc).strip().splitlines()[0]) from None
    if schema_of((table.schema.metadata or {}).get(SCHEMA_KEY), rpath) < STORE_SCHEMA:
        note_old_schema(out, RECORDS_FILE)
    skip = set(skip)
    records = records[~records["run_id"].isin(skip)]
    if records.empty:
        return {}
    try:
        optional = [c for c in OPTIONAL_CHECKPOINT_COLUMNS
                    if c in pq.read_schema(cpath).names]
        ck = pq.read_table(cpath, columns=["run_id", *CHECKPOINT_COLUMNS, *optional]
                           ).to_pandas()
    except Exception as exc:  # noqa: BLE001 - a damaged table may raise anything
        raise _damaged_pack(cpath, str(exc).strip().splitlines()[0] if str(exc) else
                            "missing") from None
    ck = ck[ck["run_id"].isin(set(records["run_id"]))]
    groups = ck.groupby("run_id", sort=False).indices
    empty = checkpoint_frame([])
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
        for c in optional:  # a run's own optional columns: those it recorded
            if idx is not None and ck[c].iloc[idx].notna().any():
                frame[c] = ck[c].iloc[idx].to_numpy(dtype="float64")
        where = Path(f"{rpath}[{rid}]")
        thinning = None
        try:
            parse_summary(summary_json, rid, where)
            thinning = None if not n else parse_thinning(
                {"thin_checkpoints": int(n), "checkpoint_rows_full": int(rows)})
            ok = run_checksum(summary_json, frame, thinning) == checksum
            reason = "" if ok else ("checksum mismatch between records.parquet and "
                                    "checkpoints.parquet (one of them was altered)")
        except (ValueError, TypeError) as exc:
            reason = str(exc)
        if reason:
            where_to = _set_aside_record(out, rid, summary_json, frame, thinning, checksum,
                                         where, reason)
            if failed is not None:
                failed[rid] = where_to
            continue
        out_records[rid] = RunRecord(rid, summary_json, frame, checksum, "packed", thinning,
                                     identity)
    return out_records


def _set_aside_record(out: Path, rid: str, summary_json: Any, frame: pd.DataFrame,
                      thinning: dict[str, int] | None, checksum: Any, where: Path,
                      reason: str) -> Path | None:
    """Write a packed record that failed verification to the quarantine, as stored."""
    try:
        text = summary_json if isinstance(summary_json, str) else json.dumps(summary_json)
        data = run_file_bytes(text.encode(errors="surrogatepass"), frame, thinning,
                              str(checksum))
    except Exception as exc:  # noqa: BLE001 - a record beyond encoding: keep it in place
        warn(f"{where}: {reason}; could not be written out ({exc}), so records.parquet "
             "must be kept as it is (its run counts as not run)")
        return None
    return set_aside(out, f"{rid}.packed.parquet", data, where, reason)


def records_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """The rows of records.parquet for ``records`` (in their order)."""
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


def packed_metadata(records: list[RunRecord], checkpoint_rows: int) -> dict[str, Any]:
    """The ``moebench_pack`` metadata of records.parquet.

    Keys: ``format`` (1; 2 when some run's checkpoints are thinned), ``runs``,
    ``checkpoint_rows``; and, for a folder with thinned runs, ``thinned_runs``,
    ``thin_checkpoints`` (the sorted N values used) and ``checkpoint_rows_full`` (the
    rows before thinning).
    """
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
