"""Per-run resource use, measured in the worker: peak resident memory and passes over X.

:class:`ResourceMeter` wraps one run (data loading, fit and evaluation) and gives the
summary's resource columns (:data:`moebench.sweep.columns.RESOURCE_COLUMNS`):

``peak_rss_mib``
    The peak resident set size of the worker process during the run (MiB): the kernel's
    high-water mark ``VmHWM``, reset to the current resident size when the run starts
    (``echo 5 > /proc/self/clear_refs``, Linux 4.0+), read when it ends. Exact (the kernel
    tracks it), and per run even in a process that runs several runs one after another
    (``moebench verify``, a dask worker). It counts every resident page, the file-backed
    pages of a memory-mapped X included: a fit that reads an 8 GB ``X.npy`` through the
    page cache shows up to 8 GB here although it holds none of it.
``peak_anon_mib``
    The peak anonymous resident memory (``RssAnon``: heap, numpy and torch buffers; not
    the file-backed pages of a memmap) during the run (MiB): what the run holds beyond the
    page cache, the figure that shows whether an out-of-core fit stays bounded. The kernel
    keeps no peak of it, so a thread samples ``/proc/self/status`` every
    :data:`SAMPLE_PERIOD` seconds (and once at each end): an allocation that lives
    shorter than that can be missed. It includes the imported libraries (numpy, scipy,
    torch: about 170 MiB) and whatever the process held before the run.
``passes_over_x``
    Passes of the fit over an on-disk X (a ``numpy.memmap``), counted by
    :func:`moebench.chunked.count_pass` (its docstring lists what counts): from the
    estimator's input checks to the end of ``fit``, not the evaluation after it. NaN for
    an in-memory X, whose reads are not counted.

Both memory columns are NaN where ``/proc/self/status`` does not exist (not Linux), and
``peak_rss_mib`` also where ``clear_refs`` cannot be written. Each is the process's, not
the run's alone, when one process runs several runs at once (a dask worker with more
than one thread); the local executor runs one run per process. The columns are
machine-dependent: ``moebench verify`` does not compare the memory columns (it compares
``passes_over_x``, which is deterministic like ``n_iter``).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from moebench import chunked

#: seconds between two samples of the anonymous resident memory
SAMPLE_PERIOD = 0.01
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def status_kib(keys: tuple[str, ...] = ("VmHWM", "RssAnon")) -> dict[str, int]:
    """Fields of ``/proc/self/status`` in KiB (empty where the file does not exist)."""
    out: dict[str, int] = {}
    try:
        with open(_STATUS) as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in keys:
                    out[key] = int(rest.split()[0])
    except OSError:
        return {}
    return out


def reset_peak_rss() -> bool:
    """Reset the kernel's peak resident size (``VmHWM``) to the current one; False if it
    cannot be (not Linux, or ``clear_refs`` not writable)."""
    try:
        with open(_CLEAR_REFS, "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


class ResourceMeter:
    """Measure one run's peak memory (the whole ``with`` block) and passes over X.

    Usage::

        meter = ResourceMeter()
        with meter:
            data = load(...)
            with meter.counting_passes(data.X):
                est.fit(data.X, data.y)
            evaluate(...)
        summary.update(meter.columns())
    """

    def __init__(self, period: float = SAMPLE_PERIOD) -> None:
        self.period = period
        self.peak_anon_kib = 0
        self.peak_rss_kib: int | None = None
        self.passes: int | None = None
        self._hwm_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        anon = status_kib(("RssAnon",)).get("RssAnon")
        if anon is not None:
            self.peak_anon_kib = max(self.peak_anon_kib, anon)

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def __enter__(self) -> ResourceMeter:
        self._hwm_reset = reset_peak_rss()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="moebench-memory",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        if self._hwm_reset:
            self.peak_rss_kib = status_kib(("VmHWM",)).get("VmHWM")

    def counting_passes(self, X: Any) -> _PassCount:
        """A context that counts the passes over ``X`` made inside it (X on disk only)."""
        return _PassCount(self, chunked.is_out_of_core(X))

    def columns(self) -> dict[str, float]:
        """The resource columns (MiB, passes; NaN where not measured)."""
        anon = self.peak_anon_kib / 1024 if self.peak_anon_kib else math.nan
        rss = self.peak_rss_kib / 1024 if self.peak_rss_kib else math.nan
        passes = float(self.passes) if self.passes is not None else math.nan
        return {"peak_rss_mib": rss, "peak_anon_mib": anon, "passes_over_x": passes}


class _PassCount:
    """The passes over X made inside a ``with`` block, stored on the meter."""

    def __init__(self, meter: ResourceMeter, active: bool) -> None:
        self.meter, self.active, self.start = meter, active, 0

    def __enter__(self) -> None:
        self.start = chunked.passes()

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            self.meter.passes = chunked.passes() - self.start
