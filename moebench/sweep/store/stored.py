"""Every verified run of a results folder: packed records and run files together."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from moebench.sweep.store.packed import packed_checksums, read_packed
from moebench.sweep.store.records import CorruptRunError, RunRecord, file_identity
from moebench.sweep.store.runfiles import (
    quarantine,
    run_file_entries,
    stored_checksum,
    verify_run_file,
)


def stored_runs(out: str | os.PathLike, run_ids: Iterable[str] | None = None,
                verified: Mapping[str, RunRecord] | None = None,
                failed: dict[str, Path | None] | None = None) -> dict[str, RunRecord]:
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
    verified : mapping, optional
        Records verified earlier by this process (a sweep's start): a run file, or the
        packed tables, whose :func:`file_identity` is still the one it was verified at
        is taken from here instead of being read and checksummed again.
    failed : dict, optional
        Receives the packed records that failed verification: run id -> where they
        were set aside (None: the quarantine could not be written, so records.parquet
        must not be rewritten without them).

    Returns
    -------
    dict
        run id -> :class:`RunRecord`, packed records first, then run files, in
        sorted order of run id within each.
    """
    out = Path(out)
    entries = run_file_entries(out)
    if run_ids is not None:
        wanted = set(run_ids)
        entries = {r: p for r, p in entries.items() if r in wanted}
    verified = verified or {}
    loose: dict[str, RunRecord] = {}
    for rid in sorted(entries):
        known = verified.get(rid)
        if known is not None and known.source == "file" and known.identity is not None \
                and known.identity == file_identity(entries[rid]):
            loose[rid] = known
            continue
        try:
            loose[rid] = verify_run_file(entries[rid])
        except CorruptRunError as exc:
            quarantine(exc.path, exc.reason)
    packed_known = [r for r in verified.values() if r.source == "packed"]
    identity = (file_identity(out / "records.parquet"), file_identity(out / "checkpoints.parquet"))
    # the cache holds the packed records not overridden by a run file at the time; it
    # serves only while every such run file is still there
    files_then = [rid for rid, r in verified.items() if r.source == "file"]
    if packed_known and all(r.identity == identity for r in packed_known) \
            and identity[0] is not None and all(rid in loose for rid in files_then):
        records = {r.run_id: r for r in packed_known if r.run_id not in loose}
    else:
        records = read_packed(out, skip=loose, failed=failed)
    records.update(loose)
    return records


def stored_checksums(out: str | os.PathLike) -> dict[str, str]:
    """run id -> checksum of every stored run, as the files state them (a run file's
    overrides a packed record's), without reading checkpoints: what the consolidated
    tables are checked against (:func:`moebench.sweep.store.records.records_digest`).

    A run file without a checksum (written before checksums existed) is verified to
    get one; one that fails is quarantined and left out.
    """
    sums = packed_checksums(out)
    for rid, path in run_file_entries(out).items():
        checksum = stored_checksum(path)
        if checksum is None:
            try:
                checksum = verify_run_file(path).checksum
            except CorruptRunError as exc:
                quarantine(exc.path, exc.reason)
                continue
        sums[rid] = checksum
    return sums


def stored_summaries(out: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """run id -> summary of every verified finished run (what a resume skips)."""
    return {rid: rec.summary for rid, rec in stored_runs(out).items()}
