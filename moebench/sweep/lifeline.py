"""Process hygiene of the local executor: no sweep process outlives ``moebench run``.

The local executor starts its workers from a forkserver, so a worker's parent is
the forkserver, not the sweep's main process (the *owner*). Three layers make
every worker end when the owner ends, however it ends (SIGKILL included), and
make the hard timeout hold even when the owner cannot enforce it:

1. The forkserver watches the owner (a ``pidfd``, else polling) and exits the
   moment the owner is gone (:func:`guard_forkserver`, run by its preload).
2. Each worker asks the kernel for SIGKILL when its parent, the forkserver, dies
   (``prctl(PR_SET_PDEATHSIG)``), and watches the owner itself too.
3. Each worker enforces its own deadline, ``timeout`` plus a margin: a watchdog
   thread records the run as ``"timeout"`` and ends the process; a ``SIGALRM``
   with its default action (the kernel ends the process; no Python code, no
   GIL needed) follows a few seconds later as the last resort.

The owner itself turns SIGTERM and SIGHUP into :class:`Interrupted` (see
:func:`interrupt_on_signals`), so its ``finally`` blocks end the workers and the
command exits with status 128 + the signal number.

Workers are named ``moebench-worker`` and the forkserver ``moebench-server``
(``ps -o comm``), and both carry ``MOEBENCH_SWEEP_OWNER=<owner pid>`` in their
environment.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator

#: environment variable that marks the forkserver and workers of a sweep: the owner's pid
OWNER_ENV = "MOEBENCH_SWEEP_OWNER"
#: process names (``/proc/PID/comm``, at most 15 bytes)
WORKER_NAME = "moebench-worker"
SERVER_NAME = "moebench-server"
#: exit status of a worker that ended itself at its own deadline
TIMEOUT_EXIT = 70
#: exit status of a process that ended because the owner ended
ORPHAN_EXIT = 3
#: seconds between the watchdog's deadline and the SIGALRM of last resort
ALARM_GRACE = 5.0

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def _prctl(option: int, arg: int | bytes) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return False


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux)."""
    return _prctl(_PR_SET_PDEATHSIG, int(sig))


def set_process_name(name: str) -> bool:
    """Set this process's name as ``ps -o comm`` and ``/proc/PID/comm`` show it (Linux)."""
    return _prctl(_PR_SET_NAME, name.encode()[:15])


def worker_deadline(timeout: float) -> float:
    """Seconds after which a worker ends itself: ``timeout`` plus a margin.

    The owner kills a worker at ``timeout``; the margin (5% of it, at least 2 s)
    lets that happen first when the owner is alive and responsive.
    """
    return timeout + max(2.0, 0.05 * timeout)


def _wait_for_exit(pid: int, timeout: float | None) -> bool:
    """Block until process ``pid`` exits (True) or ``timeout`` seconds pass (False)."""
    end = None if timeout is None else time.monotonic() + timeout
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll
        while end is None or time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
            time.sleep(0.25 if end is None else max(0.0, min(0.25, end - time.monotonic())))
        return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            left = None if end is None else max(0.0, end - time.monotonic())
            if poller.poll(None if left is None else int(math.ceil(left * 1000))):
                return True
            if end is not None and time.monotonic() >= end:
                return False
    finally:
        os.close(fd)


def _owner() -> int | None:
    value = os.environ.get(OWNER_ENV, "")
    return int(value) if value.isdigit() else None


def guard_forkserver() -> None:
    """In the forkserver: exit as soon as the sweep's owner process is gone.

    Does nothing unless this process was started by the owner named in
    :data:`OWNER_ENV` (the runner sets it before starting the forkserver).
    """
    owner = _owner()
    if owner is None or owner != os.getppid():
        return
    set_process_name(SERVER_NAME)

    def watch() -> None:
        _wait_for_exit(owner, None)
        os._exit(ORPHAN_EXIT)

    threading.Thread(target=watch, name="moebench-owner-watch", daemon=True).start()


def guard_worker(owner: int, timeout: float | None,
                 on_timeout: Callable[[], None] | None = None) -> None:
    """In a worker: end with the owner or the forkserver, and at the worker's own deadline.

    Parameters
    ----------
    owner : int
        Pid of the sweep's main process.
    timeout : float or None
        The run's hard timeout in seconds; the worker ends itself at
        :func:`worker_deadline` of it (None or inf: no deadline).
    on_timeout : callable, optional
        Called (from the watchdog thread) before the worker ends at its deadline,
        e.g. to record the run as ``"timeout"``.
    """
    parent = os.getppid()
    set_process_name(WORKER_NAME)
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(ORPHAN_EXIT)
    # Ctrl-C reaches the whole process group: the owner stops the workers itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    deadline = None
    if timeout is not None and math.isfinite(timeout) and timeout > 0:
        deadline = worker_deadline(timeout)
        with contextlib.suppress(OverflowError, ValueError, OSError):
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, deadline + ALARM_GRACE)

    def watch() -> None:
        if _wait_for_exit(owner, deadline):
            os._exit(ORPHAN_EXIT)
        if on_timeout is not None:
            with contextlib.suppress(Exception):
                on_timeout()
        os._exit(TIMEOUT_EXIT)

    threading.Thread(target=watch, name="moebench-watchdog", daemon=True).start()


class Interrupted(KeyboardInterrupt):
    """The sweep's main process got SIGINT, SIGTERM or SIGHUP."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


@contextlib.contextmanager
def interrupt_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)
                         ) -> Iterator[None]:
    """Raise :class:`Interrupted` on ``signals`` inside the block (main thread only).

    So that ``finally`` blocks run (and stop the workers) when the sweep is
    terminated, instead of the process vanishing with its workers left running.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {}
    for sig in signals:
        with contextlib.suppress(OSError, ValueError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
