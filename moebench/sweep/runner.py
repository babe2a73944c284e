"""Run the runs of a sweep: skip finished ones, run the rest in parallel, record everything.

:func:`run_sweep` checks the stored runs, selects the runs to do
(:mod:`moebench.sweep.selection`), hands them to an executor
(:mod:`moebench.sweep.executors`: local processes or a Dask cluster) and shows the
progress; :class:`SweepOutcome` says what it did.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moebench.constraints import validate_parameter
from moebench.sweep.columns import FAILED_STATUSES
from moebench.sweep.config import SweepConfig
from moebench.sweep.config_keys import JOBS
from moebench.sweep.executors import EXECUTORS, run_dask, run_local
from moebench.sweep.lifeline import interrupt_on_signals
from moebench.sweep.selection import RunSelection, iter_selected
from moebench.sweep.store import RunRecord, clean_temporaries, code_version_of, stored_runs
from moebench.version import NUMERICS_VERSION

#: statuses of runs without a usable result (re-run by ``--retry-failed``)
FAILED = FAILED_STATUSES


# --------------------------------------------------------------------------- progress
@dataclass
class Progress:
    """done/total, failures and ETA on stderr: a tqdm bar on a terminal, lines otherwise."""

    total: int
    initial: int = 0
    enabled: bool = True
    failures: int = 0
    done: int = 0
    _bar: Any = field(default=None, repr=False)
    _start: float = field(default_factory=time.perf_counter, repr=False)

    def __post_init__(self) -> None:
        self.done = self.initial
        tty = sys.stderr.isatty() and not os.environ.get("CI")
        if self.enabled and tty:
            from tqdm import tqdm

            try:
                width = os.get_terminal_size(sys.stderr.fileno()).columns
            except (OSError, ValueError):
                width = 0
            self._bar = tqdm(total=self.total, initial=self.initial, file=sys.stderr,
                             unit="run", smoothing=0.1, dynamic_ncols=width > 0,
                             ncols=None if width > 0 else 100)
            self._bar.set_postfix(failed=0)

    def update(self, summary: dict[str, Any]) -> None:
        self.done += 1
        if summary.get("status") in FAILED:
            self.failures += 1
        if self._bar is not None:
            self._bar.set_postfix(failed=self.failures)
            self._bar.update(1)
        elif self.enabled:
            elapsed = time.perf_counter() - self._start
            ran = self.done - self.initial
            eta = elapsed / ran * (self.total - self.done) if ran else float("nan")
            msg = f" ({summary.get('message')})" if summary.get("status") != "ok" else ""
            print(f"[{self.done}/{self.total}] {summary.get('label')} {summary.get('status')}"
                  f"{msg}; failed {self.failures}; ETA {eta:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did."""

    out: Path
    #: the selected runs (a :class:`RunSelection`: counted, streamed on iteration)
    cells: RunSelection
    skipped: int
    ran: int
    failures: int
    wall_time: float
    summaries: list[dict[str, Any]]
    #: selected runs with a stored record (before this sweep)
    stored: int = 0
    #: run id -> code version of the selected stored runs made by other code (all of
    #: them, re-run or not)
    stale: dict[str, int] = field(default_factory=dict)
    #: whether the stale runs were re-run (``rerun_stale``)
    reran_stale: bool = False
    #: the stored records verified at the start (run id -> record): the consolidation
    #: reuses those whose files did not change instead of checksumming them again
    verified: dict[str, RunRecord] = field(default_factory=dict)

    def stale_message(self) -> str | None:
        """One line on the stored runs made by other code, or None when there are none."""
        if not self.stale:
            return None
        versions = ", ".join(str(v) for v in sorted(set(self.stale.values())))
        word = "versions" if len(set(self.stale.values())) > 1 else "version"
        what = (f"{len(self.stale)} of {self.stored} stored runs were made by code {word} "
                f"{versions} (now {NUMERICS_VERSION})")
        if self.reran_stale:
            return f"{what}; re-ran them (--rerun-stale)"
        return f"{what}; re-run them with --rerun-stale"


def run_sweep(config: SweepConfig, out: str | os.PathLike, jobs: int = 1, force: bool = False,
              executor: str = "local", scheduler: str | None = None,
              filters: Iterable[str] = (), limit: int | None = None, progress: bool = True,
              retry_failed: bool = False, *, rerun_stale: bool = False) -> SweepOutcome:
    """Run every run of ``config`` not yet finished in ``out``.

    Parameters
    ----------
    jobs : int
        Parallel runs (worker processes, or LocalCluster workers).
    force : bool
        Re-run finished runs too.
    executor : {"local", "dask"}
        Where the runs execute: local processes or a dask.distributed cluster.
    scheduler : str, optional
        Address of a running dask scheduler (dask executor).
    filters, limit
        Run only the runs matching every ``key=value`` filter, at most ``limit``.
    retry_failed : bool
        Re-run runs whose status is error, nan, timeout or degenerate.
    rerun_stale : bool
        Re-run runs made by another code version (their ``code_version``, 1 when
        absent, is not :data:`moebench.version.NUMERICS_VERSION`). Either way the
        outcome lists them (:attr:`SweepOutcome.stale`). A re-run replaces the old run
        file atomically; in a packed folder the new run file overrides the packed record
        and the next consolidation rewrites ``records.parquet`` with it (as ``force``).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid choices: "
                         f"{', '.join(EXECUTORS)}")
    validate_parameter("jobs", jobs, [JOBS])
    if scheduler and executor != "dask":
        raise ValueError("--scheduler needs --executor dask")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean_temporaries(out)
    filters = tuple(filters)
    # verified runs (run files and a packed folder's records); damaged files are
    # quarantined here, so they count as not run
    verified = {} if force else stored_runs(out)
    stored = {rid: rec.summary for rid, rec in verified.items()}
    done = set(stored)
    if retry_failed and done:
        done = {rid for rid, s in stored.items() if s.get("status") not in FAILED}
    # one pass over the selection to count it (nothing is listed), a second one streams
    # the runs to do to the executor
    selected = stored_selected = todo_count = 0
    stale: dict[str, int] = {}
    for cell in iter_selected(config, filters, limit):
        selected += 1
        rid = cell.run_id
        if rid in stored:
            stored_selected += 1
            version = code_version_of(stored[rid])
            if version != NUMERICS_VERSION:
                stale[rid] = version
        todo_count += rid not in done or (rerun_stale and rid in stale)
    if rerun_stale:
        done -= set(stale)
    cells = RunSelection(config, filters, limit, selected)
    todo = (c for c in iter_selected(config, filters, limit) if c.run_id not in done)
    summaries: list[dict[str, Any]] = []
    bar = Progress(total=selected, initial=selected - todo_count, enabled=progress)

    def on_done(summary: dict[str, Any]) -> None:
        summaries.append(summary)
        bar.update(summary)

    start = time.perf_counter()
    try:
        # SIGTERM/SIGHUP raise Interrupted here, so the executors' finally blocks stop
        # the workers (SIGKILL cannot be caught: the workers watch this process)
        with interrupt_on_signals():
            if todo_count and executor == "local":
                run_local(todo, str(out), jobs, config.name, on_done)
            elif todo_count:  # dask submits every task at once: listed here
                run_dask(list(todo), str(out), jobs, config.name, on_done, scheduler)
    finally:
        bar.close()
    return SweepOutcome(out, cells, selected - todo_count, todo_count, bar.failures,
                        time.perf_counter() - start, summaries,
                        stored=stored_selected, stale=stale, reran_stale=rerun_stale,
                        verified=verified)
