"""The results store: run files, packed records, consolidated tables, thinning, provenance.

Layout of a results directory::

    runs/<run_id>.parquet   one finished run: its checkpoints as rows, its summary
                            (parameters, final metrics, status, provenance) as JSON in
                            the parquet metadata key ``moebench_summary``, the sha256 of
                            both in ``moebench_checksum``, the store schema in
                            ``moebench_schema``
    runs/.quarantine/       everything that failed verification, set aside (never
                            deleted), each with its reason in ``<name>.reason.txt``
    checkpoints.parquet     every run's checkpoints, one row per run and checkpoint
    summary.parquet         one row per run
    records.parquet         packed folders only: each run's summary exactly as its run
                            file stored it, and its checksum
    config.toml             the config the sweep ran (the folder belongs to it)

Modules, one concern each:

* :mod:`~moebench.sweep.store.provenance`: code version, kernel path, library versions;
* :mod:`~moebench.sweep.store.records`: the record format (summary JSON, checkpoint
  frame, checksum), the store schema version;
* :mod:`~moebench.sweep.store.runfiles`: run files (atomic writes, verification on every
  read) and the quarantine;
* :mod:`~moebench.sweep.store.packed`: ``records.parquet`` over ``checkpoints.parquet``;
* :mod:`~moebench.sweep.store.stored`: every verified run of a folder, both kinds;
* :mod:`~moebench.sweep.store.tables`: building, writing and checking the consolidated
  tables; :func:`consolidate`;
* :mod:`~moebench.sweep.store.thinning`: thinning checkpoints;
* :mod:`~moebench.sweep.store.packing`: :func:`pack` and :func:`unpack`;
* :mod:`~moebench.sweep.store.loading`: :func:`load_results` for plots and reports;
* :mod:`~moebench.sweep.store.ownership`: a folder belongs to one config;
* the ``pack`` and ``unpack`` commands are in the CLI layer, :mod:`moebench.cli.store`.

When each thing is verified is written out in ``docs/results_schema.md``.
"""

from moebench.sweep.store.loading import REQUIRED_SUMMARY_COLUMNS, load_results
from moebench.sweep.store.ownership import check_config_owner
from moebench.sweep.store.packed import (
    PACK_FORMAT,
    PACK_FORMAT_THINNED,
    PACK_KEY,
    RECORDS_FILE,
    is_packed,
    packed_run_ids,
)
from moebench.sweep.store.packing import PackOutcome, pack, unpack
from moebench.sweep.store.provenance import (
    CODE_VERSION_COLUMN,
    KERNEL_PATH_COLUMN,
    code_version_of,
    git_commit,
    kernel_path,
    provenance,
)
from moebench.sweep.store.records import (
    CHECKPOINT_COLUMNS,
    CHECKSUM_KEY,
    SCHEMA_KEY,
    STORE_SCHEMA,
    SUMMARY_KEY,
    THINNING_KEY,
    UNVERSIONED_SCHEMA,
    CorruptRunError,
    RunRecord,
    StoreSchemaError,
    file_identity,
    make_record,
    run_checksum,
    warn,
)
from moebench.sweep.store.runfiles import (
    QUARANTINE_DIR,
    REASON_SUFFIX,
    RUNS_DIR,
    clean_temporaries,
    finished_run_ids,
    quarantine,
    quarantine_dir,
    read_run_summary,
    run_path,
    runs_dir,
    verify_run_file,
    write_record,
    write_run,
)
from moebench.sweep.store.stored import stored_checksums, stored_runs, stored_summaries
from moebench.sweep.store.tables import (
    CHECKPOINT_JOIN_EXCLUDE,
    PARAMETERS_KEY,
    RECORD_ONLY_KEYS,
    TABLES_KEY,
    THINNED_COLUMN,
    ZSTD_LEVEL,
    build_tables,
    consolidate,
)
from moebench.sweep.store.thinning import (
    THIN_RANGE,
    check_thin_checkpoints,
    checkpoint_segments,
    thin_checkpoint_rows,
    thin_record,
)

__all__ = [
    "CHECKPOINT_COLUMNS", "CHECKPOINT_JOIN_EXCLUDE", "CHECKSUM_KEY", "CODE_VERSION_COLUMN",
    "KERNEL_PATH_COLUMN", "PACK_FORMAT", "PACK_FORMAT_THINNED", "PACK_KEY", "PARAMETERS_KEY",
    "QUARANTINE_DIR", "REASON_SUFFIX", "RECORDS_FILE", "RECORD_ONLY_KEYS",
    "REQUIRED_SUMMARY_COLUMNS", "RUNS_DIR", "SCHEMA_KEY", "STORE_SCHEMA", "SUMMARY_KEY",
    "TABLES_KEY", "THINNED_COLUMN", "THINNING_KEY", "THIN_RANGE", "UNVERSIONED_SCHEMA",
    "ZSTD_LEVEL", "CorruptRunError", "PackOutcome", "RunRecord", "StoreSchemaError",
    "build_tables", "check_config_owner", "check_thin_checkpoints", "checkpoint_segments",
    "clean_temporaries", "code_version_of", "consolidate", "file_identity",
    "finished_run_ids", "git_commit", "is_packed", "kernel_path", "load_results",
    "make_record", "pack", "packed_run_ids", "provenance", "quarantine",
    "quarantine_dir", "read_run_summary", "run_checksum", "run_path", "runs_dir",
    "stored_checksums", "stored_runs", "stored_summaries", "thin_checkpoint_rows",
    "thin_record", "unpack", "verify_run_file", "warn", "write_record", "write_run",
]
