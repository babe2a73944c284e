"""The ``moebench pack`` and ``moebench unpack`` verbs: a results folder in a few files.

A packed folder holds ``summary.parquet``, ``checkpoints.parquet`` and
``records.parquet`` (zstd-compressed) in place of one file per run in ``runs/``,
next to ``config.toml``, ``report.md`` and the figures. It resumes, plots and
reports like an unpacked folder; ``unpack`` gives back the run files exactly (same
summaries, same checkpoint rows). See :func:`moebench.sweep.store.packing.pack`.

``pack --thin-checkpoints N`` also thins long runs' checkpoints to the first and
last of each phase (and restart) and about N log-spaced iterations in between
(:func:`moebench.sweep.store.thinning.thin_checkpoint_rows`); summaries stay exact, and
the thinning is recorded per run and in records.parquet's metadata.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def cmd_pack(args: argparse.Namespace) -> int:
    """Pack each RESULTS folder into records.parquet + checkpoints.parquet + summary.parquet."""
    from moebench.sweep.store import check_thin_checkpoints, pack

    thin = args.thin_checkpoints
    if thin is not None:
        check_thin_checkpoints(thin)  # before any folder is touched
    for folder in args.results:
        done = pack(folder, thin_checkpoints=thin)
        thinned = (f"; thinned the checkpoints of {done.thinned} run(s) to about {thin} per "
                   f"segment ({done.checkpoint_rows_dropped} rows dropped)"
                   if thin is not None else "")
        print(f"packed {done.out}: {done.runs} runs, {done.checkpoint_rows} checkpoint rows in "
              f"summary.parquet, checkpoints.parquet, records.parquet; removed "
              f"{done.removed} run file(s){thinned}; {_mb(done.bytes_before)} -> "
              f"{_mb(done.bytes_after)}")
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    """Write back one run file per packed run."""
    from moebench.sweep.store import unpack

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
    p.add_argument("--thin-checkpoints", type=int, default=None, metavar="N",
                   help="keep, per run, the first and last checkpoint of every phase and "
                   "restart and about N log-spaced iterations in between (an integer from 2 "
                   "to 1000000; runs of at most N checkpoints per segment lose nothing); "
                   "summaries are kept exactly and each thinned run records N and its full "
                   "row count. The dropped rows are gone for good. Default: keep every "
                   "checkpoint")
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
