"""Run files: ``runs/<run_id>.parquet``, written atomically, verified when read, set aside.

A run file is written to a temporary name in ``runs/`` and moved into place with
:func:`os.replace`, so a file named ``<run_id>.parquet`` is always complete. Every read
verifies it (:func:`verify_run_file`); a file that fails, and a packed record that fails
(:func:`set_aside`), goes to ``runs/.quarantine/`` with its reason in a ``.reason.txt``
file beside it, and is never deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from moebench.io import TMP_PREFIX, atomic_write_bytes
from moebench.sweep.store.records import (
    CHECKSUM_KEY,
    SCHEMA_KEY,
    SUMMARY_KEY,
    THINNING_KEY,
    CorruptRunError,
    RunRecord,
    make_record,
    parse_summary,
    parse_thinning,
    run_checksum,
    run_file_bytes,
    schema_of,
    warn,
)

RUNS_DIR = "runs"
QUARANTINE_DIR = ".quarantine"


# --------------------------------------------------------------------------- run files
def runs_dir(out: str | os.PathLike) -> Path:
    """The folder of the run files of the results directory ``out``."""
    return Path(out) / RUNS_DIR


def run_path(out: str | os.PathLike, run_id: str) -> Path:
    """The run file of ``run_id`` in the results directory ``out``."""
    return runs_dir(out) / f"{run_id}.parquet"


def quarantine_dir(out: str | os.PathLike) -> Path:
    """Where damaged or foreign files of ``runs/`` and failed packed records are set aside
    (never deleted)."""
    return runs_dir(out) / QUARANTINE_DIR


def write_record(out: str | os.PathLike, record: RunRecord) -> Path:
    """Write one record as a run file atomically (its checksum as computed); returns its path."""
    path = run_path(out, record.run_id)
    atomic_write_bytes(path, run_file_bytes(record.summary_json.encode(), record.checkpoints,
                                            record.thinning, record.checksum))
    return path


def write_run(out: str | os.PathLike, summary: dict[str, Any],
              checkpoints: list[dict[str, Any]]) -> Path:
    """Write one finished run atomically, with its checksum (computed once); returns its path."""
    return write_record(out, make_record(summary, checkpoints))


def verify_run_file(path: str | os.PathLike) -> RunRecord:
    """Read and verify one run file.

    Checks that ``path`` is a regular, readable parquet file with moebench
    metadata, that its summary is a JSON object naming the run of the file name,
    that the checkpoint columns are all there, and, when the file carries a
    checksum (every file written since checksums exist), that it matches. The
    record's ``identity`` is the :func:`moebench.sweep.store.records.file_identity` of
    the file as read (taken from the open file, so it names the bytes checked).

    Raises
    ------
    CorruptRunError
        (a ValueError) naming the path and the reason.
    StoreSchemaError
        When the file was written by a newer store schema (it is not damaged: it is left
        in place).
    """
    path = Path(path)
    run_id = path.name[: -len(".parquet")] if path.name.endswith(".parquet") else path.stem
    if not path.is_file():
        raise CorruptRunError(path, "not a regular file" if path.exists() else "missing")
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            table = pq.read_table(fh)
    except PermissionError:
        raise CorruptRunError(path, "not readable (permission denied)") from None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, it is damaged
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptRunError(path, f"not a readable parquet file ({first})") from None
    meta = table.schema.metadata or {}
    if SUMMARY_KEY not in meta:
        raise CorruptRunError(path, "a parquet file without moebench metadata (not a run file)")
    schema_of(meta.get(SCHEMA_KEY), path)
    try:
        summary_json = meta[SUMMARY_KEY].decode()
    except UnicodeDecodeError:
        raise CorruptRunError(path, "its moebench summary is not UTF-8") from None
    parse_summary(summary_json, run_id, path)
    thinning = None
    if THINNING_KEY in meta:
        try:
            thinning = parse_thinning(json.loads(meta[THINNING_KEY]))
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
    return RunRecord(run_id, summary_json, frame, checksum, "file", thinning,
                     (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))


def read_run_summary(path: str | os.PathLike) -> dict[str, Any]:
    """The summary dict stored in a run file (verified; raises CorruptRunError)."""
    return verify_run_file(path).summary


#: suffix of the file that holds a set-aside file's reason (beside it, in the quarantine)
REASON_SUFFIX = ".reason.txt"


def set_aside_name(qdir: Path, name: str) -> Path:
    """``qdir / name``, or with a ``.1``, ``.2``, ... suffix when that is taken."""
    dest = qdir / name
    i = 0
    while dest.exists() or dest.is_symlink():
        i += 1
        dest = qdir / f"{name}.{i}"
    return dest


def write_reason(dest: Path, source: str | os.PathLike, reason: str) -> None:
    """Write why ``dest`` was set aside (and when) to ``<dest>.reason.txt`` beside it."""
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        atomic_write_bytes(dest.with_name(dest.name + REASON_SUFFIX),
                           f"{source}: {reason}\nset aside at {when}\n".encode())
    except OSError:
        pass  # the warning line names the reason too


def quarantine(path: str | os.PathLike, reason: str,
               consequence: str = "its run counts as not run") -> Path:
    """Move a damaged file of ``runs/`` into ``runs/.quarantine/`` and say so in one line.

    The move is one :func:`os.replace` (atomic; never a delete). A name already in
    the quarantine gets a ``.1``, ``.2``, ... suffix; the reason is written beside it
    (``<name>.reason.txt``). ``consequence`` ends the warning line. Returns the new path.
    """
    path = Path(path)
    qdir = path.parent / QUARANTINE_DIR
    try:
        qdir.mkdir(exist_ok=True)
    except OSError:
        pass  # reported by the move below
    dest = set_aside_name(qdir, path.name)
    try:
        os.replace(path, dest)
    except OSError as exc:  # e.g. a read-only folder: leave it, still count it as not run
        warn(f"{path}: {reason}; left in place, could not move it to {qdir} ({exc}) "
             f"({consequence})")
        return path
    write_reason(dest, path, reason)
    warn(f"{path}: {reason}; moved to {dest} ({consequence})")
    return dest


def set_aside(out: str | os.PathLike, name: str, data: bytes, source: str | os.PathLike,
              reason: str) -> Path | None:
    """Write ``data`` (a record that failed verification) into the quarantine as ``name``.

    For records that are not files of their own (packed records): the bytes are
    written atomically to ``runs/.quarantine/<name>`` (with ``.1``, ... when the name is
    taken) and the reason beside them, and one warning line says so. A quarantine file
    with the same bytes already there is reused (a record read twice is set aside once).
    Returns the path, or None when the quarantine cannot be written (the warning says
    so; the caller must then keep the record where it is).
    """
    qdir = quarantine_dir(out)
    digest = hashlib.sha256(data).digest()
    try:
        qdir.mkdir(parents=True, exist_ok=True)
        stem = name.split(".", 1)[0]
        for entry in qdir.iterdir():
            if entry.name.startswith(stem) and not entry.name.endswith(REASON_SUFFIX) and \
                    entry.is_file() and entry.stat().st_size == len(data) and \
                    hashlib.sha256(entry.read_bytes()).digest() == digest:
                return entry
        dest = set_aside_name(qdir, name)
        atomic_write_bytes(dest, data)
    except OSError as exc:
        warn(f"{source}: {reason}; could not set it aside in {qdir} ({exc}), so it stays "
             "where it is (its run counts as not run)")
        return None
    write_reason(dest, source, reason)
    warn(f"{source}: {reason}; set aside as {dest} (its run counts as not run)")
    return dest


def run_file_entries(out: str | os.PathLike) -> dict[str, Path]:
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
    return set(run_file_entries(out))


def stored_checksum(path: str | os.PathLike) -> str | None:
    """The checksum a run file says it has (its footer only; not a verification), or None
    when it has none or cannot be read."""
    try:
        raw = (pq.read_schema(path).metadata or {}).get(CHECKSUM_KEY)
    except Exception:  # noqa: BLE001 - a damaged file may raise anything
        return None
    return raw.decode(errors="replace") if raw else None


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
