"""Run the cells of a sweep: skip finished ones, run the rest in parallel, record everything.

Executors (``--executor``; not to be confused with tensor_em's array ``backend``)
---------------------------------------------------------------------------------
``local``
    One process per run, at most ``jobs`` at a time, started from a forkserver
    that has already imported moebench and every algorithm (cheap starts). A run
    over its hard ``timeout`` is killed and recorded with status ``"timeout"``; a
    worker that dies is recorded with status ``"error"``.
``dask``
    The same run function submitted to a ``dask.distributed`` cluster (an address,
    or a LocalCluster started here). A task over its hard timeout is recorded and
    its worker process ended; the nanny restarts it.

BLAS (threadpoolctl), OpenMP and torch threads per run are ``max(1, cores // jobs)``
so that ``jobs`` processes do not oversubscribe the machine.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_sentinels
from pathlib import Path
from typing import Any

import numpy as np

from moebench.cli_checks import describe_error
from moebench.constraints import validate_parameter
from moebench.sweep.columns import FAILED_STATUSES
from moebench.sweep.config import Cell, SweepConfig
from moebench.sweep.config_keys import JOBS
from moebench.sweep.lifeline import interrupt_on_signals
from moebench.sweep.store import (
    RunRecord,
    clean_temporaries,
    code_version_of,
    file_identity,
    read_run_summary,
    run_path,
    stored_runs,
    write_run,
)
from moebench.sweep.worker import WRITE_FAILED_EXIT, failure_summary
from moebench.version import NUMERICS_VERSION

#: key of the summary a dask task returns when it could not write its run file
WRITE_FAILED_KEY = "_write_failed"
#: where the runs execute (``--executor``)
EXECUTORS = ("local", "dask")
#: statuses of runs without a usable result (re-run by ``--retry-failed``)
FAILED = FAILED_STATUSES


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    return max(1, available_cores() // max(1, jobs))


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


# --------------------------------------------------------------------------- local executor
def _mp_context() -> mp.context.BaseContext:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["moebench.sweep.preload"])
        return ctx
    return mp.get_context("spawn")  # pragma: no cover - Windows


def _written(path: Path, before: tuple[int, ...] | None) -> bool:
    """Whether ``path`` holds a run file written since ``before`` was taken."""
    now = file_identity(path)
    return now is not None and now != before and path.is_file()


def _finish(out: str, cell: Cell, exitcode: int | None, config: str, started: float,
            before: tuple[int, ...] | None = None,
            received: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of a finished worker: the one it sent after writing its run file (not
    read back: the consolidation reads each run file once), else the run file it wrote,
    else a failure record."""
    if received is not None:
        return received
    path = run_path(out, cell.run_id)
    if _written(path, before):
        return read_run_summary(path)
    why = (f"worker process could not write its run file (exit code {exitcode}: an OS "
           f"error such as a full disk)" if exitcode == WRITE_FAILED_EXIT else
           f"worker process exited with code {exitcode} before writing a result")
    summary = failure_summary(cell, "error", why, config, time.perf_counter() - started)
    write_run(out, summary, [])  # the same full disk fails here, in one line in the main
    return summary


def _receive(conn: Any, conns: dict[Any, str], received: dict[str, dict[str, Any]]) -> None:
    """Take the summary a worker sent over ``conn`` (if any) and close it."""
    rid = conns.pop(conn)
    try:
        if conn.poll():
            received[rid] = conn.recv()
    except (EOFError, OSError):  # the worker ended without sending (it crashed)
        pass
    finally:
        conn.close()


def run_local(cells: Iterable[Cell], out: str, jobs: int, config: str,
              on_done: Callable[[dict[str, Any]], None]) -> None:
    """Run ``cells`` in at most ``jobs`` worker processes at a time.

    Each worker writes its run file and then sends its summary back over a pipe, so the
    parent does not read the file it was just given; a worker that sent nothing (killed,
    crashed) is looked up on disk. ``cells`` is consumed as the workers free up (a generator
    is never listed).
    """
    from moebench.sweep.lifeline import OWNER_ENV
    from moebench.sweep.worker import process_main

    owner = os.getpid()
    # read by the forkserver (started by the first Process.start) and inherited by the
    # workers: both end when this process ends (moebench.sweep.lifeline)
    os.environ[OWNER_ENV] = str(owner)
    ctx = _mp_context()
    threads = threads_per_job(jobs)
    queue = iter(cells)
    pending: deque[Cell] = deque(itertools.islice(queue, 1))  # the next cell, if any
    running: dict[int, tuple[Any, Cell, float]] = {}
    # the run file a re-run replaces (--force, --rerun-stale), so that it is not taken for
    # the new result
    before: dict[str, tuple[int, ...] | None] = {}
    # the receiving end of each worker's pipe -> its run id; summaries received
    conns: dict[Any, str] = {}
    received: dict[str, dict[str, Any]] = {}

    def drain(run_id: str) -> dict[str, Any] | None:
        for conn, rid in list(conns.items()):
            if rid == run_id:
                _receive(conn, conns, received)
        return received.pop(run_id, None)

    try:
        while pending or running:
            while pending and len(running) < jobs:
                cell = pending.popleft()
                pending.extend(itertools.islice(queue, 1))
                before[cell.run_id] = file_identity(run_path(out, cell.run_id))
                recv_end, send_end = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=process_main,
                                   args=(cell, out, threads, config, owner, send_end),
                                   name=f"moebench-{cell.run_id}", daemon=True)
                proc.start()
                send_end.close()
                conns[recv_end] = cell.run_id
                running[proc.sentinel] = (proc, cell, time.perf_counter())
            now = time.perf_counter()
            wait_for = min(cell.variant.timeout - (now - t0) for _, cell, t0 in running.values())
            ready = wait_sentinels([*running, *conns], timeout=max(0.05, min(wait_for, 1.0)))
            for obj in ready:  # summaries first (a large one blocks its sender until read)
                if obj in conns:
                    _receive(obj, conns, received)
            for sentinel in ready:
                if sentinel not in running:
                    continue
                proc, cell, t0 = running.pop(sentinel)
                proc.join()
                on_done(_finish(out, cell, proc.exitcode, config, t0, before[cell.run_id],
                                drain(cell.run_id)))
            now = time.perf_counter()
            for sentinel, (proc, cell, t0) in list(running.items()):
                if now - t0 > cell.variant.timeout:
                    proc.kill()
                    proc.join()
                    del running[sentinel]
                    path = run_path(out, cell.run_id)
                    sent = drain(cell.run_id)
                    if sent is not None or _written(path, before[cell.run_id]):
                        on_done(sent if sent is not None else read_run_summary(path))
                        continue  # finished just in time
                    summary = failure_summary(
                        cell, "timeout", f"killed after the hard timeout of "
                        f"{cell.variant.timeout:g} s", config, now - t0)
                    write_run(out, summary, [])
                    on_done(summary)
    finally:
        for proc, _, _ in running.values():
            proc.kill()
            proc.join()
        for conn in conns:
            conn.close()


# --------------------------------------------------------------------------- dask executor
#: seconds to wait for a dask scheduler given by --scheduler
DASK_CONNECT_TIMEOUT = 10.0
#: dask's default scheduler port
DASK_DEFAULT_PORT = 8786


def check_scheduler(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when a ``tcp://`` or ``tls://`` scheduler address is unreachable.

    Only opens (and closes) a TCP connection; other protocols are left to dask.

    Raises
    ------
    ValueError
        The address is malformed or nothing listens there.
    """
    from urllib.parse import urlsplit

    url = address if "://" in address else f"tcp://{address}"
    scheme = url.split("://", 1)[0]
    if scheme not in ("tcp", "tls"):
        return
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or DASK_DEFAULT_PORT
    except ValueError:  # e.g. a port that is not a number
        host, port = None, None
    if not host:
        raise ValueError(f"--scheduler {address!r} is not an address; expected tcp://HOST:PORT, "
                         f"e.g. tcp://127.0.0.1:{DASK_DEFAULT_PORT}")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ValueError(f"--scheduler {address!r}: cannot reach a dask scheduler at "
                         f"{host}:{port} ({exc.strerror or exc}); start one (`dask scheduler`) "
                         f"or give the address it prints") from None


def run_cell_dask(cell: Cell, out: str, threads: int, config: str,
                  replaces: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The dask task: run one cell in the worker process, under a hard timeout.

    A run over its timeout is recorded as ``"timeout"`` and the worker process is
    ended (``os._exit``; the dask nanny starts a fresh one), the only way to stop
    code stuck in a C routine. A retried task finds the record and returns it;
    ``replaces`` is the :func:`file_identity` of the run file a re-run replaces
    (``--force``, ``--rerun-stale``), which does not count as the record.
    """
    import threading

    from moebench.sweep.worker import run_cell

    path = run_path(out, cell.run_id)
    if _written(path, replaces):
        return read_run_summary(path)
    done = threading.Event()
    started = time.perf_counter()

    def watchdog() -> None:
        if not done.wait(cell.variant.timeout):
            summary = failure_summary(cell, "timeout", f"killed after the hard timeout of "
                                      f"{cell.variant.timeout:g} s", config,
                                      time.perf_counter() - started)
            write_run(out, summary, [])
            os._exit(70)

    threading.Thread(target=watchdog, name="moebench-timeout", daemon=True).start()
    try:
        return run_cell(cell, out, threads, config)
    except OSError as exc:
        # the run file could not be written (a full disk): no traceback in the worker's log;
        # the client records the run and meets the same error, in one line
        summary = failure_summary(cell, "error", f"could not write its run file "
                                  f"({describe_error(exc)})", config,
                                  time.perf_counter() - started)
        summary[WRITE_FAILED_KEY] = True
        return summary
    finally:
        done.set()


def run_dask(cells: list[Cell], out: str, jobs: int, config: str,
             on_done: Callable[[dict[str, Any]], None], scheduler: str | None = None) -> None:
    """Submit every cell to a dask.distributed cluster and collect the results.

    ``out`` must be a folder every worker can write (a shared file system for a
    remote cluster). Without ``scheduler`` a LocalCluster of ``jobs`` worker
    processes with one thread each is started and closed here.
    """
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ValueError("--executor dask needs dask.distributed: pip install "
                         "'moebench[dask]'") from None
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"--scheduler {scheduler!r}: no dask scheduler answered within "
                             f"{DASK_CONNECT_TIMEOUT:g} s ({describe_error(exc)}); give the "
                             f"address a running scheduler prints, e.g. tcp://HOST:8786"
                             ) from None
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        threads = 1 if n_workers > 1 else threads_per_job(jobs)
    else:
        cluster = LocalCluster(n_workers=max(1, min(jobs, len(cells))), threads_per_worker=1,
                               processes=True, host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
        threads = threads_per_job(jobs)
    cells_by_key = {f"moebench-{cell.run_id}": cell for cell in cells}
    try:
        before = {cell.run_id: file_identity(run_path(out, cell.run_id)) for cell in cells}
        futures = [client.submit(run_cell_dask, cell, str(Path(out).resolve()), threads,
                                 config, before[cell.run_id], key=f"moebench-{cell.run_id}",
                                 pure=False)
                   for cell in cells]
        for future in as_completed(futures):
            cell = cells_by_key[future.key]
            try:
                summary = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker must not end the sweep
                path = run_path(out, cell.run_id)
                if _written(path, before[cell.run_id]):
                    summary = read_run_summary(path)
                else:
                    summary = failure_summary(cell, "error", f"dask task failed: "
                                              f"{type(exc).__name__}: {exc}", config)
                    write_run(out, summary, [])
            else:
                if summary.pop(WRITE_FAILED_KEY, False):
                    write_run(out, summary, [])  # a full disk fails here too: one line
            on_done(summary)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --------------------------------------------------------------------------- sweep
@dataclass(frozen=True)
class CellSelection:
    """The cells a sweep selected, as a sequence that is never listed: ``len`` is the count
    (:func:`count_runs`), iterating streams them again (:func:`iter_selected`)."""

    config: SweepConfig
    filters: tuple[str, ...]
    limit: int | None
    count: int

    def __iter__(self) -> Iterator[Cell]:
        return iter_selected(self.config, self.filters, self.limit)

    def __len__(self) -> int:
        return self.count


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did."""

    out: Path
    #: the selected cells (a :class:`CellSelection`: counted, streamed on iteration)
    cells: CellSelection
    skipped: int
    ran: int
    failures: int
    wall_time: float
    summaries: list[dict[str, Any]]
    #: selected cells with a stored run (before this sweep)
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


#: filter keys that are not data keys
RUN_KEYS = ("label", "algorithm", "repetition")


def parse_filters(filters: Iterable[str], data_keys: Iterable[str]) -> dict[str, list[str]]:
    """``KEY=VALUE`` filters as key -> values, every key checked.

    The same key given twice selects runs with either value (``--filter k=2 --filter
    k=3``: k is 2 or 3); different keys must all match.

    Raises
    ------
    ValueError
        A filter without ``=`` or with a key that is neither a data key nor ``label``,
        ``algorithm`` or ``repetition``.
    """
    parsed: dict[str, list[str]] = {}
    for f in filters:
        if "=" not in f:
            raise ValueError(f"--filter takes KEY=VALUE (e.g. k=3, label=joint_em); got {f!r}")
        key, value = (part.strip() for part in f.split("=", 1))
        parsed.setdefault(key, [])
        if value not in parsed[key]:
            parsed[key].append(value)
    valid = set(RUN_KEYS) | set(data_keys)
    for key in parsed:
        if key not in valid:
            raise ValueError(f"--filter: unknown key {key!r}; valid keys: "
                             f"{', '.join(sorted(valid))}")
    return parsed


def _value_matches(field: Any, value: str) -> bool:
    if str(field) == value:
        return True
    try:  # numbers match by value: gating_scale=8 selects 8.0, k=3.0 selects 3
        return (isinstance(field, (int, float)) and not isinstance(field, bool)
                and float(field) == float(value))
    except ValueError:
        return False


def cell_matches(cell: Cell, parsed: dict[str, list[str]], *, repetition: bool = True) -> bool:
    """Whether ``cell`` matches every filter key (one of its values); ``repetition=False``
    leaves the repetition filter out (the counting checks it once for every cell)."""
    for key, values in parsed.items():
        if key in cell.variant.setting:
            continue  # a variant that fixes this key (the reference: k = 1) matches any
        if key in ("label", "algorithm"):
            field = getattr(cell.variant, key)
        elif key == "repetition":
            if not repetition:
                continue
            field = cell.repetition
        else:
            field = cell.data[key]
        if not any(_value_matches(field, v) for v in values):
            return False
    return True


def select_cells(cells: Iterable[Cell], filters: Iterable[str] = (), limit: int | None = None
                 ) -> list[Cell]:
    """Cells matching every ``key=value`` filter (data keys, label, algorithm, repetition).

    A key given more than once matches any of its values (see :func:`parse_filters`).
    """
    cells = list(cells)
    parsed = parse_filters(filters, cells[0].data if cells else ())
    chosen = [c for c in cells if cell_matches(c, parsed)]
    return chosen[:limit] if limit is not None else chosen


def iter_selected(config: SweepConfig, filters: Iterable[str] = (), limit: int | None = None
                  ) -> Iterator[Cell]:
    """The cells of :func:`select_cells` on ``config.cells()``, streamed (nothing is listed)."""
    parsed = parse_filters(filters, config.data_grid[0] if config.data_grid else ())
    chosen = (c for c in config.iter_cells() if cell_matches(c, parsed))
    return itertools.islice(chosen, limit) if limit is not None else chosen


@dataclass
class RunCount:
    """How many runs a config has and a selection takes, counted from the grid's shape."""

    #: every run of the config
    total: int
    #: the runs the filters and the limit select
    selected: int
    #: variant label -> selected runs (before the limit)
    by_variant: dict[str, int]
    #: (variant label, data setting, selected runs) of every selected pair (before the limit)
    by_pair: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)


def _repetitions_selected(values: list[str] | None, repetitions: int) -> int:
    """How many of ``range(repetitions)`` match one of the repetition filter ``values``."""
    if values is None:
        return repetitions
    reps = set()
    for value in values:
        try:
            f = float(value)
        except ValueError:
            continue
        if f.is_integer() and 0 <= f < repetitions:
            reps.add(int(f))
    return len(reps)


def count_runs(config: SweepConfig, filters: Iterable[str] = (), limit: int | None = None
               ) -> RunCount:
    """Count the runs of ``config`` and of a selection without listing them.

    One pass over the distinct (data setting, variant) pairs (:meth:`SweepConfig.pairs`),
    each counted once per selected repetition: time and memory grow with the number of
    settings and variants, not with the repetitions. Agrees with
    ``len(select_cells(config.cells(), filters, limit))``.
    """
    parsed = parse_filters(filters, config.data_grid[0] if config.data_grid else ())
    reps = _repetitions_selected(parsed.get("repetition"), config.repetitions)
    total = selected = 0
    by_variant: dict[str, int] = {}
    by_pair: list[tuple[str, dict[str, Any], int]] = []
    for _, variant, data in config.pairs():
        total += config.repetitions
        cell = Cell(data, variant, 0, config.seed, config.success_threshold)
        if reps and cell_matches(cell, parsed, repetition=False):
            selected += reps
            by_variant[variant.label] = by_variant.get(variant.label, 0) + reps
            by_pair.append((variant.label, data, reps))
    if limit is not None:
        selected = min(selected, limit)
    return RunCount(total, selected, by_variant, by_pair)


def _setting_value(value: Any) -> str:
    """A data-setting value as a key that a config value and its stored column agree on."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return repr(float(value))
    return str(value)


def estimate_cost(out: str | os.PathLike, count: RunCount, jobs: int = 1) -> str | None:
    """One line estimating the selected runs' cost from the stored runs in ``out``.

    Each selected (variant, data setting) pair costs its repetitions times the median
    ``wall_time`` of the stored runs of the same variant label and setting (any status:
    a failed run took its time too), or, where the folder holds none of that setting,
    of the variant's stored runs at any setting; pairs of variants without stored runs
    are left out and said so. None when ``out`` holds no stored run of a selected
    variant (nothing to estimate from). Reads only ``summary.parquet``'s ``label``,
    ``wall_time`` and data-setting columns.
    """
    import pandas as pd

    path = Path(out) / "summary.parquet"
    if not path.is_file() or not count.by_pair:
        return None
    try:
        names = set(_parquet_columns(path))
        keys = sorted({key for _, data, _ in count.by_pair for key, value in data.items()
                       if key in names and not isinstance(value, dict)})
        stored = pd.read_parquet(path, columns=["label", "wall_time", *keys])
    except Exception:  # noqa: BLE001 - an unreadable or old table: no estimate
        return None
    stored = stored[stored["label"].isin(list(count.by_variant))
                    & pd.to_numeric(stored["wall_time"], errors="coerce").notna()]
    if stored.empty:
        return None
    stored = stored.assign(wall_time=stored["wall_time"].astype(float))
    by_label = stored.groupby("label")["wall_time"].median().to_dict()
    settings = stored[keys].map(_setting_value).agg("|".join, axis=1) if keys else ""
    by_setting = stored.assign(setting=settings).groupby(["label", "setting"])[
        "wall_time"].median().to_dict()
    seconds, same, other, listed = 0.0, 0, 0, 0
    missing = set()
    for label, data, runs in count.by_pair:
        listed += runs
        key = "|".join(_setting_value(data.get(k)) for k in keys) if keys else ""
        if (label, key) in by_setting:
            seconds += runs * by_setting[label, key]
            same += runs
        elif label in by_label:
            seconds += runs * by_label[label]
            other += runs
        else:
            missing.add(label)
    share = count.selected / listed if listed else 0.0  # the --limit, pro rata
    hours = seconds * share / 3600.0
    covered = round((same + other) * share)
    line = (f"cost estimate: {hours:.3g} run-hours ({hours / max(1, jobs):.3g} h at --jobs "
            f"{jobs}) for {covered} of the {count.selected} selected runs, from the median "
            f"wall time of {len(stored)} stored run(s) in {path} ({round(same * share)} runs "
            f"by their variant and data setting, {round(other * share)} by their variant at "
            f"other settings)")
    if missing:
        line += f"; variant(s) without stored runs not estimated: {', '.join(sorted(missing))}"
    return line


def _parquet_columns(path: Path) -> list[str]:
    """The column names of a parquet file, read from its schema only."""
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def run_sweep(config: SweepConfig, out: str | os.PathLike, jobs: int = 1, force: bool = False,
              executor: str = "local", scheduler: str | None = None,
              filters: Iterable[str] = (), limit: int | None = None, progress: bool = True,
              retry_failed: bool = False, *, rerun_stale: bool = False) -> SweepOutcome:
    """Run every cell of ``config`` not yet finished in ``out``.

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
        Run only the cells matching every ``key=value`` filter, at most ``limit``.
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
    # quarantined here, so their cells count as not run
    verified = {} if force else stored_runs(out)
    stored = {rid: rec.summary for rid, rec in verified.items()}
    done = set(stored)
    if retry_failed and done:
        done = {rid for rid, s in stored.items() if s.get("status") not in FAILED}
    # one pass over the selection to count it (nothing is listed), a second one streams
    # the cells to run to the executor
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
    cells = CellSelection(config, filters, limit, selected)
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
