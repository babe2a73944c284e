"""Where a sweep's runs execute (``--executor``; not to be confused with tensor_em's array
``backend``).

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
so that ``jobs`` processes do not oversubscribe the machine. :func:`moebench.sweep.runner.run_sweep`
chooses the runs and hands them to :func:`run_local` or :func:`run_dask`.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing.connection import wait as wait_sentinels
from pathlib import Path
from typing import Any

from moebench.io import describe_error
from moebench.sweep.config import Run
from moebench.sweep.store import file_identity, read_run_summary, run_path, write_run
from moebench.sweep.worker import WRITE_FAILED_EXIT, failure_summary

#: key of the summary a dask task returns when it could not write its run file
WRITE_FAILED_KEY = "_write_failed"
#: where the runs execute (``--executor``)
EXECUTORS = ("local", "dask")


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    return max(1, available_cores() // max(1, jobs))


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


def _finish(out: str, cell: Run, exitcode: int | None, config: str, started: float,
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


def run_local(cells: Iterable[Run], out: str, jobs: int, config: str,
              on_done: Callable[[dict[str, Any]], None]) -> None:
    """Do the runs ``cells`` (:class:`~moebench.sweep.config.Run`) in at most ``jobs`` worker
    processes at a time.

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
    pending: deque[Run] = deque(itertools.islice(queue, 1))  # the next run, if any
    running: dict[int, tuple[Any, Run, float]] = {}
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


def run_cell_dask(cell: Run, out: str, threads: int, config: str,
                  replaces: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The dask task: do one run in the worker process, under a hard timeout.

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


def run_dask(cells: list[Run], out: str, jobs: int, config: str,
             on_done: Callable[[dict[str, Any]], None], scheduler: str | None = None) -> None:
    """Submit every run to a dask.distributed cluster and collect the results.

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
