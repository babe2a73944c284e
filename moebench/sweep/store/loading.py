"""Loading a results folder's tables for plots and reports, checked against the records.

:func:`load_results` reads ``summary.parquet`` and ``checkpoints.parquet`` and checks
them against the stored records before anything is drawn from them: a schema-2 table
must match its own content digest and the digest of the stored records' checksums
(:func:`moebench.sweep.store.tables.tables_disagreement`); a schema-1 table (written
before versions) is checked by its run ids and file times, with a one-line note. A table
that disagrees is rebuilt from the records with a one-line warning; one that holds what
the records do not (edited, or listing runs no longer stored) is first copied to
``runs/.quarantine/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from moebench.sweep.store.packed import RECORDS_FILE, is_packed, packed_run_ids
from moebench.sweep.store.records import (
    SCHEMA_KEY,
    STORE_SCHEMA,
    UNVERSIONED_SCHEMA,
    note_old_schema,
    schema_of,
    warn,
)
from moebench.sweep.store.runfiles import (
    finished_run_ids,
    quarantine_dir,
    run_file_entries,
    set_aside_name,
    write_reason,
)
from moebench.sweep.store.stored import stored_checksums, stored_runs
from moebench.sweep.store.tables import (
    build_tables,
    existing_order,
    ordered_records,
    table_record,
    tables_disagreement,
    write_tables,
)

REQUIRED_SUMMARY_COLUMNS = ("run_id", "status", "label")
TABLE_FILES = ("summary.parquet", "checkpoints.parquet")


def _newer_run_files(path: Path, entries: dict[str, Path]) -> str | None:
    """"it is older than N run file(s)" when run files (or records.parquet) changed after
    the tables were written (a file rewritten in place may keep its stated checksum: only
    reading it again finds out), else None."""
    stamp = (path / "summary.parquet").stat().st_mtime_ns
    newer = 0
    for p in entries.values():
        try:
            newer += p.stat().st_mtime_ns > stamp
        except OSError:
            newer += 1
    return f"it is older than {newer} run file(s)" if newer else None


def _stale_reason_v1(path: Path, summary: pd.DataFrame) -> str | None:
    """Why a schema-1 ``summary.parquet`` no longer matches the stored runs, or None."""
    entries = run_file_entries(path)
    stored = set(entries) | packed_run_ids(path)
    listed = set(summary["run_id"]) if "run_id" in summary.columns else set()
    new = stored - listed
    if new:
        return f"it lacks {len(new)} stored run(s)"
    gone = listed - stored
    if gone and stored:
        return f"it lists {len(gone)} run(s) no longer stored"
    return _newer_run_files(path, entries)


def _keep_old_tables(path: Path, reason: str) -> Path | None:
    """Copy the folder's tables into the quarantine (with ``reason`` beside each) before
    they are rebuilt; returns where."""
    qdir = quarantine_dir(path)
    try:
        qdir.mkdir(parents=True, exist_ok=True)
        dest = None
        for name in TABLE_FILES:
            if (path / name).is_file():
                dest = set_aside_name(qdir, name)
                shutil.copy2(path / name, dest)
                write_reason(dest, path / name, reason)
        return dest.parent if dest is not None else None
    except OSError as exc:
        warn(f"could not copy the tables of {path} to {qdir} ({exc}); they are rebuilt anyway "
             "from the stored records")
        return None


def _folder_schema(path: Path) -> int:
    """The store schema of the folder's records: records.parquet's, else the newest of
    its run files' (read from their footers), else the unversioned schema."""
    files = [path / RECORDS_FILE] if is_packed(path) else []
    files += sorted(run_file_entries(path).values())
    schema = UNVERSIONED_SCHEMA
    for f in files:
        try:
            meta = pq.read_schema(f).metadata or {}
        except Exception:  # noqa: BLE001 - a damaged file is found when it is read
            continue
        schema = max(schema, schema_of(meta.get(SCHEMA_KEY), f))
        if schema == STORE_SCHEMA:
            break
    return schema


def _check_tables(path: Path, summary: pd.DataFrame, checkpoints: pd.DataFrame
                  ) -> str | None:
    """The one-line reason to rebuild the tables of ``path``, or None when they hold."""
    schemas = [table_record(path / name)[0] for name in TABLE_FILES]
    has_store = bool(finished_run_ids(path)) or is_packed(path)
    if max(schemas) == UNVERSIONED_SCHEMA and (
            not has_store or _folder_schema(path) == UNVERSIONED_SCHEMA):
        if has_store:  # a moebench folder, not loose tables
            note_old_schema(path, "summary.parquet and checkpoints.parquet")
        reason = _stale_reason_v1(path, summary)
        return f"{path / 'summary.parquet'} is stale ({reason})" if reason else None
    stored = stored_checksums(path) if has_store else None
    found = tables_disagreement(path, summary, checkpoints, stored)
    if found is None:
        entries = run_file_entries(path)
        if is_packed(path):  # records.parquet rewritten after the tables: read it again
            entries = {**entries, RECORDS_FILE: path / RECORDS_FILE}
        newer = _newer_run_files(path, entries)
        return f"{path / 'summary.parquet'} is stale ({newer})" if newer else None
    reason, keep = found
    if keep and not has_store:
        warn(f"{path}: {reason}, and there are no stored runs to rebuild the tables from; "
             "read as they are")
        return None
    if not keep:
        return f"{path / 'summary.parquet'} is stale ({reason})"
    return (f"the tables of {path} disagree with the {len(stored or {})} stored run(s) "
            f"({reason}); the old tables copied to {_keep_old_tables(path, reason)}")


def load_results(results: str | os.PathLike, require_runs: bool = False
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, checkpoints) of a results directory (or of its summary.parquet).

    Consolidates the stored runs when the directory has no tables yet, when a
    table cannot be read, or when the tables disagree with the stored records (see
    the module docstring): each case is said in one warning line. Damaged run files
    and packed records are set aside and left out, never fatal.

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
        damaged, or a file was written by a newer store schema.
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
            reason = _check_tables(path, summary, checkpoints)
            if reason:
                warn(f"{reason}; rebuilding them from the stored runs "
                     f"(`moebench run CONFIG --out {path}` does the same)")
                summary = None
    if summary is None or checkpoints is None:
        if not (finished_run_ids(path) or is_packed(path)):
            raise FileNotFoundError(
                f"{path} holds no results (no summary.parquet and no runs/*.parquet); "
                f"run `moebench run CONFIG --out {path}` first")
        failed: dict[str, Path | None] = {}
        records = ordered_records(stored_runs(path, failed=failed), existing_order(path))
        summary, checkpoints = build_tables(records)
        kept = [rid for rid, where in failed.items() if where is None]
        try:
            if kept:  # records.parquet keeps a record that could not be set aside
                raise OSError(f"{len(kept)} failed packed record(s) could not be set aside")
            write_tables(path, records, summary, checkpoints, csv=False,
                         packed=is_packed(path))
        except OSError as exc:
            warn(f"could not rewrite the tables of {path} ({exc}); using them in memory")
    if require_runs and (summary.empty or "status" not in summary.columns):
        raise ValueError(f"{path} holds no runs (its summary is empty): nothing to draw; "
                         f"run `moebench run CONFIG --out {path}` first")
    return summary, checkpoints
