"""No sweep process outlives ``moebench run``, and the hard timeout always holds (issue 11.4).

Each test starts ``moebench run`` on a sweep whose runs would go on for minutes
(sgd with a million epochs and tol = 0), waits for its workers to compute, ends
the main process (SIGKILL, SIGTERM, Ctrl-C) or freezes it (SIGSTOP), and checks
that every process the sweep started (forkserver, workers, resource tracker) is
gone a few seconds later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from moebench.sweep.lifeline import OWNER_ENV, SERVER_NAME, WORKER_NAME, worker_deadline
from moebench.sweep.store import read_run_summary, runs_dir

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="process hygiene relies on Linux prctl and pidfd")

LONG = """name = "hygiene"
seed = 3
repetitions = 2
[data]
n = 20000
d = 6
k = 3
n_test = 100
[budget]
max_iter = 1000000
max_time = 300.0
{timeout}
[[algorithm]]
name = "sgd"
params = {{tol = 0.0, max_epochs = 1000000}}
"""


def alive(proc: psutil.Process) -> bool:
    """Running (a zombie waiting to be reaped by init counts as gone)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def sweep_processes(owner: int) -> list[psutil.Process]:
    """Every live process marked as part of the sweep of ``owner`` (by name and environment)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] not in (WORKER_NAME, SERVER_NAME):
            continue
        try:
            if proc.environ().get(OWNER_ENV) == str(owner) and alive(proc):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_sweep(tmp_path: Path, timeout: str = "") -> tuple[subprocess.Popen, list[psutil.Process]]:
    """Start ``moebench run --jobs 2`` and wait until both workers compute."""
    config = tmp_path / "long.toml"
    config.write_text(LONG.format(timeout=timeout))
    err = open(tmp_path / "stderr.txt", "w")  # noqa: SIM115 - closed with the process
    # SIGINT at its default, as a terminal's foreground job has it: a test process started
    # in the background of a non-interactive shell inherits SIGINT ignored, and Python then
    # never raises KeyboardInterrupt (the sweep would rightly ignore Ctrl-C)
    proc = subprocess.Popen([sys.executable, "-m", "moebench.cli", "run", str(config),
                             "--out", str(tmp_path / "out"), "--jobs", "2", "--no-plot"],
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                            env=dict(os.environ, CI="1"), preexec_fn=_default_sigint)
    err.close()
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        workers = [p for p in children if p.name() == WORKER_NAME]
        if len(workers) == 2 and all(p.cpu_times().user > 0.3 for p in workers):
            return proc, children
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"workers did not start: {workers}")


def wait_or_dump(proc: subprocess.Popen, tmp_path: Path, seconds: float) -> int:
    """The exit status of ``proc``; if it is still running after ``seconds``, fail with
    the Python stacks of its threads (``moebench`` dumps them on SIGUSR1) and its stderr."""
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(2.0)
        proc.kill()
        proc.wait(timeout=30)
        stacks = (tmp_path / "stderr.txt").read_text()
        raise AssertionError(f"main process still running {seconds:g} s after the signal; "
                             f"its stderr and stacks:\n{stacks}") from None


def wait_gone(procs: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    left = [p for p in procs if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


@pytest.mark.parametrize("sig, group, status", [
    (signal.SIGKILL, False, -signal.SIGKILL),
    (signal.SIGTERM, False, 128 + signal.SIGTERM),
    (signal.SIGINT, True, 128 + signal.SIGINT),
], ids=["sigkill-main", "sigterm-main", "ctrl-c-group"])
def test_workers_end_with_the_main_process(tmp_path, sig, group, status):
    proc, children = start_sweep(tmp_path)
    started = {p.pid: p.name() for p in children}
    assert SERVER_NAME in started.values(), started
    try:
        (os.killpg if group else os.kill)(proc.pid, sig)
        assert wait_or_dump(proc, tmp_path, 30.0) == status
        left = wait_gone(children, 5.0)
        assert not left, f"still running 5 s after {sig.name}: {left}"
        assert not sweep_processes(proc.pid)
    finally:
        for p in children:
            if alive(p):
                p.kill()
    err = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in err, err
    if sig != signal.SIGKILL:
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"moebench run: interrupted by {sig.name}") and "resume" in last
    # the killed runs left nothing behind that would count as finished
    assert not [p for p in runs_dir(tmp_path / "out").glob("*.parquet")]


def test_hard_timeout_holds_when_the_main_process_cannot_enforce_it(tmp_path):
    timeout = 3.0
    proc, children = start_sweep(tmp_path, timeout=f"timeout = {timeout}")
    workers = [p for p in children if p.name() == WORKER_NAME]
    os.kill(proc.pid, signal.SIGSTOP)  # the main process no longer kills anything
    try:
        left = wait_gone(workers, worker_deadline(timeout) + 10.0)
        assert not left, f"workers outlived their hard timeout of {timeout} s: {left}"
        files = sorted(runs_dir(tmp_path / "out").glob("*.parquet"))
        assert len(files) == 2
        for path in files:
            summary = read_run_summary(path)
            assert summary["status"] == "timeout" and "hard timeout of 3 s" in summary["message"]
            assert timeout <= summary["wall_time"] <= worker_deadline(timeout) + 5.0
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        os.kill(proc.pid, signal.SIGCONT)
        proc.wait(timeout=30)
    assert not wait_gone(children, 5.0)


def test_watchdog_backstop_ends_a_worker_stuck_holding_the_gil(tmp_path):
    # sum() over a huge range runs in C without releasing the GIL: the watchdog thread
    # cannot run, so the SIGALRM (default action: the kernel ends the process) must
    code = ("import os, sys; from moebench.sweep.lifeline import guard_worker; "
            "guard_worker(os.getppid(), 0.5); sum(range(10**13))")
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], timeout=60)
    elapsed = time.monotonic() - t0
    assert result.returncode == -signal.SIGALRM
    assert elapsed < worker_deadline(0.5) + 5.0 + 10.0


def test_orphaned_worker_ends_when_its_owner_is_gone(tmp_path):
    # a worker whose owner pid is already dead ends at once, before computing anything
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    code = (f"from moebench.sweep.lifeline import guard_worker; import time; "
            f"guard_worker({dead.pid}, None); time.sleep(60)")
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert result.returncode == 3 and time.monotonic() - t0 < 30
