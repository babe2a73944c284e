"""Thinning a run's checkpoints to a geometric grid of iterations (``pack --thin-checkpoints``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from moebench.sweep.store.records import RunRecord, run_checksum

#: valid range of ``thin_checkpoints`` (checkpoints kept per run segment, about)
THIN_RANGE = (2, 1_000_000)


def check_thin_checkpoints(n: Any) -> int:
    """``n`` as a valid ``thin_checkpoints`` value (an integer in :data:`THIN_RANGE`).

    Raises
    ------
    ValueError
        Naming the option (``thin_checkpoints``, ``--thin-checkpoints`` on the command
        line), the bad value and the valid range.
    """
    low, high = THIN_RANGE
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not low <= n <= high:
        raise ValueError(f"thin_checkpoints (--thin-checkpoints) must be an integer from {low} "
                         f"to {high} (about how many checkpoints to keep per run segment); "
                         f"got {n!r}")
    return int(n)


def checkpoint_segments(phase: Sequence[Any], iteration: Sequence[int]) -> np.ndarray:
    """The segment of each checkpoint row: a new one where the phase changes or the
    iteration goes down (a restart), so iterations never decrease within a segment.

    Parameters
    ----------
    phase, iteration : sequence
        One entry per checkpoint, in recorded order.

    Returns
    -------
    ndarray of int64
        0, 0, ..., 1, 1, ... (empty for no rows).
    """
    ph = np.asarray(phase, dtype=object)
    it = np.asarray(iteration, dtype=np.int64)
    if len(it) == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.zeros(len(it), dtype=bool)
    new[1:] = (ph[1:] != ph[:-1]) | (it[1:] < it[:-1])
    return np.cumsum(new).astype(np.int64)


def thin_checkpoint_rows(phase: Sequence[Any], iteration: Sequence[int], n: int) -> np.ndarray:
    """Positions of the checkpoint rows a thinned run keeps (sorted, recorded order).

    Within each segment (:func:`checkpoint_segments`: a phase, or one restart of it)
    of more than ``n`` rows, with iterations from ``i0`` to ``i1``, the kept rows are
    the segment's first and last row and, for each offset ``o`` of the geometric
    grid ``round(geomspace(1, i1 - i0 + 1, n)) - 1``, the first row whose iteration
    is at least ``i0 + o``. A segment of at most ``n`` rows is kept whole. So the
    first and last checkpoint of the run and of every phase and restart are always
    kept, early iterations densely and late ones about ``n`` per decade span, and
    thinning a thinned run again with the same ``n`` keeps every row.

    Parameters
    ----------
    phase, iteration : sequence
        One entry per checkpoint, in recorded order.
    n : int
        About how many rows to keep per segment (see :func:`check_thin_checkpoints`).

    Returns
    -------
    ndarray of int64
    """
    n = check_thin_checkpoints(n)
    it = np.asarray(iteration, dtype=np.int64)
    seg = checkpoint_segments(phase, it)
    keep: list[np.ndarray] = []
    bounds = np.flatnonzero(np.diff(seg, prepend=-1, append=seg[-1] + 1 if len(seg) else 0))
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b - a <= n:
            keep.append(np.arange(a, b))
            continue
        its = it[a:b]
        span = int(its[-1] - its[0]) + 1
        offsets = np.unique(np.clip(np.rint(np.geomspace(1, span, n)), 1, span).astype(np.int64)
                            ) - 1
        pos = a + np.searchsorted(its, its[0] + offsets, side="left")
        keep.append(np.unique(np.concatenate([[a, b - 1], pos[pos < b]])))
    return np.concatenate(keep).astype(np.int64) if keep else np.zeros(0, dtype=np.int64)


def thin_record(record: RunRecord, n: int) -> RunRecord:
    """``record`` with its checkpoints thinned to :func:`thin_checkpoint_rows` (a new record).

    The summary is kept byte-exact; the checksum is recomputed over the kept rows and
    the thinning record. A run already thinned is returned as it is (whatever ``n``),
    and so is a run that loses no row (it stays a complete run).
    """
    n = check_thin_checkpoints(n)
    if record.thinning is not None:
        return record
    ck = record.checkpoints
    rows = thin_checkpoint_rows(ck["phase"].to_numpy(), ck["iteration"].to_numpy(), n)
    if len(rows) == len(ck):
        return record
    frame = ck.iloc[rows].reset_index(drop=True)
    thinning = {"thin_checkpoints": n, "checkpoint_rows_full": len(ck)}
    return RunRecord(record.run_id, record.summary_json, frame,
                     run_checksum(record.summary_json, frame, thinning), record.source,
                     thinning)
