"""Pack a results folder into a few tables, and unpack it back into run files.

Neither ever loses a verified run: :func:`pack` deletes a run file only after the packed
tables were read back and matched it, and :func:`unpack` deletes records.parquet only
after every packed run has a verified run file (or was set aside because it failed
verification). Both work on a ``runs/`` that is a symbolic link (the link and its target
folder stay).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from moebench.io import atomic_write_bytes
from moebench.sweep.store.packed import RECORDS_FILE, is_packed, read_packed
from moebench.sweep.store.records import CorruptRunError, file_identity, run_file_bytes
from moebench.sweep.store.runfiles import (
    clean_temporaries,
    quarantine,
    quarantine_dir,
    run_file_entries,
    run_path,
    runs_dir,
    verify_run_file,
)
from moebench.sweep.store.stored import stored_runs
from moebench.sweep.store.tables import (
    build_tables,
    check_set_aside,
    existing_order,
    ordered_records,
    write_tables,
)
from moebench.sweep.store.thinning import check_thin_checkpoints, thin_record


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
        (``moebench_pack``: :func:`~moebench.sweep.store.packed.packed_metadata`).
        Runs thinned before are left as they are. The
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
    entries = run_file_entries(out)
    before = _tree_size([*entries.values(), out / "summary.parquet", out / "checkpoints.parquet",
                         out / RECORDS_FILE])
    failed: dict[str, Path | None] = {}
    store = stored_runs(out, failed=failed)
    check_set_aside(out, failed, "pack")
    if not store:
        where = f"{RECORDS_FILE} holds none" if is_packed(out) else f"no {RECORDS_FILE}"
        raise FileNotFoundError(f"{out} holds no runs to pack (no runs/*.parquet, and {where})")
    records = ordered_records(store, existing_order(out))
    thinned = dropped = 0
    if thin_checkpoints is not None:
        thin = [thin_record(rec, thin_checkpoints) for rec in records]
        for old, new in zip(records, thin, strict=True):
            if new is not old:
                thinned += 1
                dropped += len(old.checkpoints) - len(new.checkpoints)
        records = thin
    summary_df, ck_df = build_tables(records)
    write_tables(out, records, summary_df, ck_df, csv=False, packed=True)
    back = read_packed(out)
    for rec in records:
        got = back.get(rec.run_id)
        if got is None or got.summary_json != rec.summary_json or \
                got.thinning != rec.thinning or \
                not got.checkpoints.equals(rec.checkpoints.reset_index(drop=True)):
            raise ValueError(f"pack {out}: run {rec.run_id} did not read back equal from "
                             f"{out / RECORDS_FILE}; no run file was deleted")
    removed = 0
    for rid, path in run_file_entries(out).items():
        # only the very file that was verified and packed (not one written since)
        if rid in back and back[rid].source == "packed" and rid in store and \
                store[rid].source == "file" and store[rid].identity == file_identity(path):
            path.unlink()
            removed += 1
    _remove_empty_runs_dir(out)
    after = _tree_size([out / "summary.parquet", out / "checkpoints.parquet", out / RECORDS_FILE,
                        *run_file_entries(out).values()])
    return PackOutcome(out, len(records), len(ck_df), removed, before, after, thinned, dropped)


def _remove_empty_runs_dir(out: Path) -> None:
    """Remove an empty quarantine and an empty ``runs/`` (a symbolic link stays, with its
    target folder)."""
    d = runs_dir(out)
    qdir = quarantine_dir(out)
    if qdir.is_dir() and not qdir.is_symlink() and not any(qdir.iterdir()):
        qdir.rmdir()
    if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
        d.rmdir()


def unpack(out: str | os.PathLike, force: bool = False) -> int:
    """Write ``runs/<run_id>.parquet`` for every packed run, then remove ``records.parquet``.

    Nothing on disk is trusted unverified: the packed records are verified (one that
    fails is set aside in ``runs/.quarantine/`` first); an existing run file is verified,
    kept when it verifies (unless ``force``) and moved to the quarantine when it does not
    (a junk file named after a run), and the packed record is written in its place.
    With ``force``, a verified run file that differs from the packed record is moved to
    the quarantine too, never overwritten. ``records.parquet`` is removed only after every
    packed run has a verified run file, so the last verified copy is never deleted.

    Each run file gets the summary exactly as packed and the same checkpoint rows
    (so :func:`~moebench.sweep.store.runfiles.verify_run_file` gives back equal summaries
    and frames); a thinned run's file
    carries its thinning record (metadata key ``moebench_thinning``) and its checksum.
    ``summary.parquet`` and ``checkpoints.parquet`` stay (they are the consolidated
    tables of an unpacked folder too). Returns the number of run files written.

    Raises
    ------
    ValueError
        When ``out`` is not a packed folder, or a run could not be given a verified run
        file (records.parquet is then kept).
    """
    out = Path(out)
    if not is_packed(out):
        raise ValueError(f"{out} is not a packed results folder (no {RECORDS_FILE}); "
                         "valid input: a folder written by `moebench pack`")
    clean_temporaries(out)
    failed: dict[str, Path | None] = {}
    packed = read_packed(out, failed=failed)
    check_set_aside(out, failed, "unpack")
    entries = run_file_entries(out)
    written = 0
    checked: set[str] = set()
    for rid, rec in packed.items():
        path = entries.get(rid)
        if path is not None:
            try:
                existing = verify_run_file(path)
            except CorruptRunError as exc:
                quarantine(exc.path, exc.reason, "the packed record is written in its place")
            else:
                if not force or existing.checksum == rec.checksum:
                    checked.add(rid)
                    if not force:
                        continue
                else:
                    quarantine(path, "a verified run file that differs from its packed record",
                               "the packed record is written in its place (unpack --force)")
        atomic_write_bytes(run_path(out, rid), run_file_bytes(
            rec.summary_json.encode(), rec.checkpoints, rec.thinning, rec.checksum))
        checked.discard(rid)
        written += 1
    for rid in packed:
        if rid in checked:
            continue
        try:
            verify_run_file(run_path(out, rid))
        except CorruptRunError as exc:
            raise ValueError(f"unpack {out}: the run file written for {rid} does not verify "
                             f"({exc.reason}); {RECORDS_FILE} was kept") from None
    (out / RECORDS_FILE).unlink()
    for name in ("summary.parquet", "checkpoints.parquet"):
        if (out / name).is_file():  # still up to date: not older than the run files
            os.utime(out / name)
    return written
