"""The ``moebench pack`` and ``moebench unpack`` verbs: a results folder in a few files.

A packed folder holds ``summary.parquet``, ``checkpoints.parquet`` and
``records.parquet`` (zstd-compressed) in place of one file per run in ``runs/``,
next to ``config.toml``, ``report.md`` and the figures. It resumes, plots and
reports like an unpacked folder; ``unpack`` gives back the run files exactly (same
summaries, same checkpoint rows). See :func:`moebench.sweep.results.pack`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def cmd_pack(args: argparse.Namespace) -> int:
    """Pack each RESULTS folder into records.parquet + checkpoints.parquet + summary.parquet."""
    from moebench.sweep.results import pack

    for folder in args.results:
        done = pack(folder)
        print(f"packed {done.out}: {done.runs} runs, {done.checkpoint_rows} checkpoint rows in "
              f"summary.parquet, checkpoints.parquet, records.parquet; removed "
              f"{done.removed} run file(s); {_mb(done.bytes_before)} -> {_mb(done.bytes_after)}")
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    """Write back one run file per packed run."""
    from moebench.sweep.results import unpack

    for folder in args.results:
        n = unpack(folder, force=args.force)
        print(f"unpacked {folder}: wrote {n} run file(s) to {Path(folder) / 'runs'}")
    return 0


def add_pack_parser(sub: argparse._SubParsersAction) -> None:
    """The ``pack`` verb."""
    p = sub.add_parser(
        "pack", help="pack a results folder into a few compressed tables",
        description="Verify every run file of RESULTS, write every run (its exact summary and "
        "checkpoints) into records.parquet and checkpoints.parquet plus summary.parquet, read "
        "them back and only then delete runs/. A packed folder still resumes (new runs go to "
        "runs/ and the next pack merges them), plots and reports; `moebench unpack` restores "
        "the run files.")
    p.add_argument("results", nargs="+", metavar="RESULTS", help="results directory")
    p.set_defaults(func=cmd_pack)


def add_unpack_parser(sub: argparse._SubParsersAction) -> None:
    """The ``unpack`` verb."""
    p = sub.add_parser(
        "unpack", help="restore the run files of a packed results folder",
        description="Write runs/<run_id>.parquet for every run of a packed RESULTS folder "
        "(same summaries and checkpoint rows as before packing) and remove records.parquet.")
    p.add_argument("results", nargs="+", metavar="RESULTS", help="packed results directory")
    p.add_argument("--force", action="store_true",
                   help="overwrite run files already in runs/ (default: keep them)")
    p.set_defaults(func=cmd_unpack)
